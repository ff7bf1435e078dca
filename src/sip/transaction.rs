//! The non-INVITE client transaction (RFC 3261 17.1.2): send, retransmit over UDP with timer
//! E (T1 doubling up to T2, then T2 once a provisional answer came), give up at timer F, and
//! return the first final response whose Via branch and CSeq method match the request.
//!
//! Over TCP and TLS the transport retransmits, so the request is sent once. Responses that do
//! not belong to the transaction (stray retransmissions) are ignored; requests from the server
//! that arrive meanwhile are ignored too, or kept for the caller ([`non_invite_keeping`]): on a
//! stream nobody resends them, so a registered line must not lose an INVITE that comes while
//! its REGISTER refresh is in flight.

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

/// Timers E and A (RFC 3261 17.1.2.2, 17.1.1.2): when a request over UDP that has no answer
/// yet is sent again. T1 after the first send, doubling each time up to a cap: T2 for a
/// non-INVITE request, none for an INVITE (whose timer B ends it first).
#[derive(Debug)]
pub struct Retransmit {
    interval: Duration,
    cap: Duration,
    due: tokio::time::Instant,
}

impl Retransmit {
    /// For a non-INVITE request just sent.
    pub fn non_invite() -> Self {
        Self::starting(T2)
    }

    /// For an INVITE just sent.
    pub fn invite() -> Self {
        Self::starting(Duration::MAX)
    }

    fn starting(cap: Duration) -> Self {
        Retransmit {
            interval: T1,
            cap,
            due: tokio::time::Instant::now() + T1,
        }
    }

    /// When the next resend is due.
    pub fn due(&self) -> tokio::time::Instant {
        self.due
    }

    /// The request was sent again: the next resend waits twice as long, up to the cap.
    pub fn sent_again(&mut self) {
        self.interval = self.interval.saturating_mul(2).min(self.cap);
        self.due = tokio::time::Instant::now() + self.interval;
    }

    /// A provisional answer came: a non-INVITE request is resent every T2 from now on.
    pub fn provisional(&mut self) {
        self.interval = T2;
        self.due = tokio::time::Instant::now() + T2;
    }
}

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
    non_invite_keeping(conn, request, branch, timer_f, &mut Vec::new()).await
}

/// [`non_invite`], the requests that arrive meanwhile pushed onto `requests` (raw, in order of
/// arrival) for the caller to serve once the transaction is over.
pub async fn non_invite_keeping(
    conn: &mut Connection,
    request: &Request,
    branch: &str,
    timer_f: Duration,
    requests: &mut Vec<Vec<u8>>,
) -> Result<Exchange, SipError> {
    let bytes = request.to_bytes();
    let started = Instant::now();
    let give_up = tokio::time::Instant::now() + timer_f;
    conn.send(&bytes).await?;
    let reliable = conn.transport().reliable();
    let mut resend = Retransmit::non_invite();
    let mut provisional = false;
    loop {
        // Three things can happen first: the transaction times out (timer F), it is time to
        // retransmit (timer E, UDP only), or a message arrives. `recv` is cancel-safe, so losing
        // the race to a timer loses no bytes.
        let wake = if reliable {
            give_up
        } else {
            resend.due().min(give_up)
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {
                if tokio::time::Instant::now() >= give_up {
                    return Err(SipError::Timeout(timer_f));
                }
                conn.send(&bytes).await?;
                resend.sent_again();
            }
            received = conn.recv() => {
                let received = received?;
                if !message::is_response(&received) {
                    // Keep-alive CRLFs are not requests; anything else may be.
                    if !received.iter().all(u8::is_ascii_whitespace) && requests.len() < 32 {
                        requests.push(received);
                    }
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
                    resend.provisional();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::uac::Client;
    use crate::sip::uri::SipUri;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The request's header `name` (its whole line), to echo in a response.
    fn line_of(request: &str, name: &str) -> String {
        request
            .lines()
            .find(|l| l.starts_with(&format!("{name}:")))
            .unwrap_or_default()
            .to_string()
    }

    fn ok_for(request: &str, branch_override: Option<&str>) -> String {
        let mut via = line_of(request, "Via");
        if let Some(b) = branch_override {
            via = format!("Via: SIP/2.0/UDP 127.0.0.1;branch={b}");
        }
        format!(
            "SIP/2.0 200 OK\r\n{via}\r\n{}\r\n{}\r\n{}\r\n{}\r\nContent-Length: 0\r\n\r\n",
            line_of(request, "From"),
            line_of(request, "To"),
            line_of(request, "Call-ID"),
            line_of(request, "CSeq")
        )
    }

    #[tokio::test]
    async fn udp_retransmits_and_ignores_what_is_not_its_answer() {
        let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = server.local_addr().unwrap().port();
        // The server drops the first copy, then answers the retransmission with noise, a
        // response of another transaction, and finally the real answer.
        let responder = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            let (_, _) = server.recv_from(&mut buf).await.unwrap();
            let (n, from) = server.recv_from(&mut buf).await.unwrap();
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            for reply in [
                "garbage\r\n\r\n".to_string(),
                "SIP/2.0 200 OK\r\nbroken header\r\n\r\n".to_string(),
                ok_for(&request, Some("z9hG4bKsomeoneelse")),
                ok_for(&request, None),
            ] {
                server.send_to(reply.as_bytes(), from).await.unwrap();
            }
        });
        let uri = SipUri::parse(&format!("sip:127.0.0.1:{port}")).unwrap();
        let mut conn = Connection::open(&uri, None).await.unwrap();
        let mut client = Client::new(SipUri::parse("sip:monitor@127.0.0.1").unwrap());
        let (request, branch) = client.request(&conn, "OPTIONS", &uri, None);
        let exchange = non_invite(&mut conn, &request, &branch, TIMER_F)
            .await
            .unwrap();
        assert_eq!(exchange.response.status, 200);
        assert_eq!(exchange.response.top_branch(), Some(branch.as_str()));
        // Answered only after the first retransmission, T1 after the first send.
        assert!(exchange.rtt >= T1, "{:?}", exchange.rtt);
        responder.await.unwrap();
    }

    #[tokio::test]
    async fn a_stream_that_announces_too_big_a_message_is_a_protocol_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // One connection: read the request, answer with a head that promises 100 MB.
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = tcp.read(&mut buf).await;
            let _ = tcp
                .write_all(b"SIP/2.0 200 OK\r\nContent-Length: 100000000\r\n\r\n")
                .await;
            let _ = tcp.read(&mut buf).await;
        });
        let uri = SipUri::parse(&format!("sip:127.0.0.1:{port};transport=tcp")).unwrap();
        let mut conn = Connection::open(&uri, None).await.unwrap();
        let mut client = Client::new(SipUri::parse("sip:monitor@127.0.0.1").unwrap());
        let (request, branch) = client.request(&conn, "OPTIONS", &uri, None);
        let error = non_invite(&mut conn, &request, &branch, TIMER_F)
            .await
            .unwrap_err();
        assert!(
            matches!(error, SipError::Protocol(ref m) if m.contains("100000")),
            "{error}"
        );
    }

    #[tokio::test]
    async fn gives_up_at_timer_f() {
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let uri = SipUri::parse(&format!(
            "sip:127.0.0.1:{}",
            silent.local_addr().unwrap().port()
        ))
        .unwrap();
        let mut conn = Connection::open(&uri, None).await.unwrap();
        let mut client = Client::new(SipUri::parse("sip:monitor@127.0.0.1").unwrap());
        let (request, branch) = client.request(&conn, "OPTIONS", &uri, None);
        let timer_f = Duration::from_millis(1200);
        let error = non_invite(&mut conn, &request, &branch, timer_f)
            .await
            .unwrap_err();
        assert!(
            matches!(error, SipError::Timeout(d) if d == timer_f),
            "{error}"
        );
        // The first send and the retransmission at 0.5 s; the next (at 1.5 s) is past timer F.
        let mut buf = [0u8; 4096];
        let mut copies = 0;
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(50), silent.recv_from(&mut buf)).await
        {
            copies += 1;
        }
        assert_eq!(
            copies, 2,
            "first send and one retransmission before timer F"
        );
    }
}
