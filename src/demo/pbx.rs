//! The demo shop's phone system: a small SIP "PBX" inside the demo process, on 127.0.0.1 over UDP.
//!
//! It does three jobs, each just far enough for the demo's phone checks to run the same code
//! paths as against a real PBX:
//! - **Registrar.** A REGISTER for the demo subscriber ([`SUBSCRIBER`]) is challenged (401, digest
//!   MD5 with `qop=auth`) and checked with the same digest code the client answers with
//!   ([`digest::verify`]). The subscriber's contact is the address its REGISTER came from (what a
//!   registrar uses with `rport`), so a call reaches the socket of supportwatch's line.
//! - **Hotline.** An INVITE to [`HOTLINE`] rings (180), is answered (200 with SDP) and hears a
//!   440 Hz tone as PCMU RTP, one packet every 20 ms, sent to the address of the caller's SDP
//!   until the caller's BYE (or [`MAX_CALL`]). With `--break phone` the packets carry μ-law
//!   silence, which is what a broken IVR sounds like. OPTIONS is answered 200. A re-INVITE
//!   during the call (a hold, a session refresh) is answered 200 with the call's SDP unchanged,
//!   and the tone goes on as before.
//! - **Callback dialer.** [`Pbx::dial`] calls a registered subscriber from the same socket (a
//!   line listens only to its registrar), ACKs the answer and lets the line hang up.
//!
//! Messages are read and written with `crate::sip::message`, the SDP with `crate::sip::sdp`. It
//! is not a PBX: one UDP socket, no proxying, no TCP or TLS, no media renegotiation, registrations do not
//! expire, and its own responses are not retransmitted (loopback does not lose datagrams; a
//! retransmitted INVITE is answered again).

use super::shop::{Break, Breaks};
use crate::sip::audio::linear_to_ulaw;
use crate::sip::digest::{self, Algorithm, Challenge, Credentials, Qop};
use crate::sip::message::{self, IncomingRequest, Request, Response};
use crate::sip::sdp::{self, Codec};
use crate::sip::transaction::Retransmit;
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The shop's hotline number: `sip:88005550100@PBX`.
pub const HOTLINE: &str = "88005550100";
/// The one subscriber the registrar knows: the user of the demo's `demo-line` account, whose
/// number (`+7 900 555-01-00`) a callback form is filled with.
pub const SUBSCRIBER: &str = "79005550100";
/// The digest realm and the domain in From and To.
pub const REALM: &str = "demo-shop.test";
/// The longest a hotline call plays its tone when the caller never hangs up.
pub const MAX_CALL: Duration = Duration::from_secs(60);
/// The tone's peak, about −15 dBFS RMS: a greeting at normal loudness.
const TONE_PEAK: f64 = 8000.0;
/// Samples per RTP packet: 20 ms at 8 kHz.
const SAMPLES: usize = 160;
/// Between ringing and answering the hotline, so `ringing` and `answer` are two phases.
const RING_FOR: Duration = Duration::from_millis(300);

/// The running PBX; clones share it. It stops with the demo's stop token.
#[derive(Clone)]
pub struct Pbx(Arc<Inner>);

struct Inner {
    socket: UdpSocket,
    addr: SocketAddr,
    password: String,
    broken: Arc<Breaks>,
    stop: CancellationToken,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Registered subscribers: user → where their REGISTER came from.
    contacts: HashMap<String, SocketAddr>,
    /// The nonces of recent challenges (a REGISTER answers one of them).
    nonces: VecDeque<String>,
    /// Hotline calls by Call-ID.
    calls: HashMap<String, Call>,
    /// Our own calls: Call-ID → where the serve loop hands their responses.
    dialing: HashMap<String, mpsc::Sender<Response>>,
}

/// One hotline call.
struct Call {
    /// The last answer to its INVITE (resent for a retransmitted INVITE).
    answer: Vec<u8>,
    /// Stops the tone.
    tone: CancellationToken,
    /// Our SDP, once answered (what a re-INVITE is answered with).
    sdp: Option<String>,
}

impl Pbx {
    /// Binds 127.0.0.1 on a port the OS chooses and serves until `stop`. The subscriber
    /// authenticates with `password`; `broken` decides whether the hotline plays silence.
    pub async fn start(
        password: String,
        broken: Arc<Breaks>,
        stop: CancellationToken,
    ) -> std::io::Result<Pbx> {
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let addr = socket.local_addr()?;
        let pbx = Pbx(Arc::new(Inner {
            socket,
            addr,
            password,
            broken,
            stop,
            state: Mutex::new(State::default()),
        }));
        // The receive loop: every request and the answers to our own calls, until the demo stops.
        tokio::spawn(pbx.clone().serve());
        Ok(pbx)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.0.addr
    }

    /// Where `user` registered from, if it is registered.
    pub fn contact(&self, user: &str) -> Option<SocketAddr> {
        self.state().contacts.get(user).copied()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn send(&self, bytes: &[u8], to: SocketAddr) {
        if let Err(e) = self.0.socket.send_to(bytes, to).await {
            tracing::debug!(error = %e, %to, "demo PBX: cannot send");
        }
    }

    async fn serve(self) {
        let mut buf = vec![0u8; message::MAX_MESSAGE];
        loop {
            // Either the demo stops or a datagram arrives; `recv_from` loses nothing when the
            // stop wins.
            let received = tokio::select! {
                _ = self.0.stop.cancelled() => break,
                r = self.0.socket.recv_from(&mut buf) => r,
            };
            match received {
                Ok((n, from)) => self.handle(&buf[..n], from).await,
                Err(e) => {
                    // An ICMP error reported on the socket; nothing to do but go on.
                    tracing::debug!(error = %e, "demo PBX: receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    async fn handle(&self, bytes: &[u8], from: SocketAddr) {
        if message::is_response(bytes) {
            if let Ok(response) = message::parse_response(bytes) {
                let call_id = response.header("Call-ID").unwrap_or_default();
                let waiting = self.state().dialing.get(call_id).cloned();
                if let Some(tx) = waiting {
                    // Full only if the dialer is far behind; a retransmission is then dropped.
                    let _ = tx.try_send(response);
                }
            }
            return;
        }
        let Ok(request) = message::parse_request(bytes) else {
            return; // keep-alive CRLFs, noise
        };
        let reply = match request.method.as_str() {
            "REGISTER" => Some(self.register(&request, from)),
            "INVITE" => Some(self.invite(&request, from)),
            "BYE" => {
                let call_id = first(&request, "Call-ID");
                if let Some(call) = self.state().calls.remove(call_id) {
                    call.tone.cancel();
                }
                Some(request.response(200, "OK"))
            }
            // A CANCEL comes too late: the hotline answers at once.
            "OPTIONS" | "CANCEL" => Some(request.response(200, "OK")),
            "ACK" => None,
            _ => Some(request.response(501, "Not Implemented")),
        };
        if let Some(bytes) = reply {
            self.send(&bytes, from).await;
        }
    }

    fn challenge(nonce: &str) -> Challenge {
        Challenge {
            realm: REALM.to_string(),
            nonce: nonce.to_string(),
            opaque: None,
            algorithm: Algorithm::Md5,
            qop: Some(Qop::Auth),
            stale: false,
        }
    }

    /// A REGISTER: challenged, then accepted with the right password.
    fn register(&self, request: &IncomingRequest, from: SocketAddr) -> Vec<u8> {
        if uri_user(first(request, "To")).as_deref() != Some(SUBSCRIBER) {
            return request.response(404, "Not Found");
        }
        let credentials = Credentials {
            user: SUBSCRIBER,
            password: &self.0.password,
        };
        let mut state = self.state();
        let authorized = request.headers_named("Authorization").any(|header| {
            state.nonces.iter().any(|nonce| {
                digest::verify(&Self::challenge(nonce), header, &credentials, "REGISTER")
            })
        });
        if !authorized {
            let nonce = format!("{:032x}", rand::random::<u128>());
            state.nonces.push_back(nonce.clone());
            if state.nonces.len() > 16 {
                state.nonces.pop_front();
            }
            let challenge =
                format!("Digest realm=\"{REALM}\", nonce=\"{nonce}\", algorithm=MD5, qop=\"auth\"");
            return request.response_with(
                401,
                "Unauthorized",
                Some("pbx"),
                &[("WWW-Authenticate", challenge)],
                None,
            );
        }
        let expires = first(request, "Expires")
            .trim()
            .parse::<u32>()
            .unwrap_or(3600)
            .min(3600);
        if expires == 0 {
            state.contacts.remove(SUBSCRIBER);
        } else {
            state.contacts.insert(SUBSCRIBER.to_string(), from);
        }
        request.response_with(
            200,
            "OK",
            Some("pbx"),
            &[
                (
                    "Contact",
                    format!("<sip:{SUBSCRIBER}@{from}>;expires={expires}"),
                ),
                ("Expires", expires.to_string()),
            ],
            None,
        )
    }

    /// An INVITE to the hotline: 180 now, the call's task answers and plays.
    fn invite(&self, request: &IncomingRequest, from: SocketAddr) -> Vec<u8> {
        if first(request, "To").contains(";tag=") {
            return self.reinvite(request);
        }
        let call_id = first(request, "Call-ID").to_string();
        if let Some(call) = self.state().calls.get(&call_id) {
            return call.answer.clone(); // a retransmission
        }
        if uri_user(&request.uri).as_deref() != Some(HOTLINE) {
            return request.response(404, "Not Found");
        }
        // The caller's offer read with the answer parser: where it listens, which codec first.
        let media = match sdp::parse_answer(&request.body) {
            Ok(sdp::Answer {
                media: Some(media),
                codec: Some(Codec::Pcmu),
            }) => media,
            _ => return request.response(488, "Not Acceptable Here"),
        };
        let tag = format!("{:016x}", rand::random::<u64>());
        let contact = ("Contact", format!("<sip:{HOTLINE}@{}>", self.0.addr));
        let ringing = request.response_with(180, "Ringing", Some(&tag), &[contact], None);
        let tone = self.0.stop.child_token();
        let call = Call {
            answer: ringing.clone(),
            tone: tone.clone(),
            sdp: None,
        };
        self.state().calls.insert(call_id, call);
        // The call's task: answers after a moment of ringing, plays until the caller's BYE
        // cancels `tone`, MAX_CALL passes or the demo stops.
        tokio::spawn(self.clone().play(request.clone(), from, media, tag, tone));
        ringing
    }

    /// An INVITE inside a hotline call (its To has our tag): 200 with the call's SDP as it was,
    /// so the media stay where they are; 491 while the call is still ringing, 481 for no call.
    fn reinvite(&self, request: &IncomingRequest) -> Vec<u8> {
        let sdp = match self.state().calls.get(first(request, "Call-ID")) {
            Some(call) => call.sdp.clone(),
            None => return request.response(481, "Call/Transaction Does Not Exist"),
        };
        match sdp {
            Some(sdp) => {
                let contact = ("Contact", format!("<sip:{HOTLINE}@{}>", self.0.addr));
                request.response_with(200, "OK", None, &[contact], Some(("application/sdp", &sdp)))
            }
            None => request.response(491, "Request Pending"),
        }
    }

    async fn play(
        self,
        request: IncomingRequest,
        from: SocketAddr,
        media: SocketAddr,
        tag: String,
        tone: CancellationToken,
    ) {
        tokio::select! {
            _ = tone.cancelled() => return,
            _ = tokio::time::sleep(RING_FOR) => {}
        }
        // The RTP socket lives as long as this task: dropped when the call ends.
        let rtp = match UdpSocket::bind("127.0.0.1:0").await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "demo PBX: no RTP socket");
                return;
            }
        };
        let Ok(local) = rtp.local_addr() else { return };
        let body = answer_sdp(local);
        let contact = ("Contact", format!("<sip:{HOTLINE}@{}>", self.0.addr));
        let ok = request.response_with(
            200,
            "OK",
            Some(&tag),
            &[contact],
            Some(("application/sdp", &body)),
        );
        let call_id = first(&request, "Call-ID").to_string();
        if let Some(call) = self.state().calls.get_mut(&call_id) {
            call.answer = ok.clone();
            call.sdp = Some(body);
        }
        self.send(&ok, from).await;
        // Decided once per call: healing the break shows on the next call.
        let silent = self.0.broken.contains(&Break::Phone);
        let ssrc = rand::random::<u32>();
        let mut sample = 0usize;
        let mut sequence = rand::random::<u16>();
        let mut ticks = tokio::time::interval(Duration::from_millis(20));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = Instant::now() + MAX_CALL;
        loop {
            // A packet every 20 ms until the caller hangs up, the cap, or the demo stops.
            tokio::select! {
                _ = tone.cancelled() => break,
                _ = tokio::time::sleep_until(end) => break,
                _ = ticks.tick() => {}
            }
            let packet = rtp_packet(sequence, sample, ssrc, silent);
            let _ = rtp.send_to(&packet, media).await;
            sequence = sequence.wrapping_add(1);
            sample = sample.wrapping_add(SAMPLES);
        }
        self.state().calls.remove(&call_id);
    }

    /// Calls `number` (its digits) if a subscriber registered as it: an INVITE from the
    /// hotline, an ACK to the answer; the subscriber hangs up. `Err` says why no call was made
    /// or how it ended.
    pub async fn dial(&self, number: &str) -> Result<(), String> {
        let user: String = number.chars().filter(char::is_ascii_digit).collect();
        let contact = self
            .contact(&user)
            .ok_or_else(|| format!("no phone is registered as {number}"))?;
        let call_id = format!("{:016x}@{REALM}", rand::random::<u64>());
        let tag = format!("{:016x}", rand::random::<u64>());
        let branch = format!("z9hG4bK{:016x}", rand::random::<u64>());
        // The offer must name a real port; held for the call, though the PBX only dials.
        let rtp = UdpSocket::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("no RTP socket: {e}"))?;
        let media = rtp.local_addr().map_err(|e| e.to_string())?;
        let addr = self.0.addr;
        let invite = Request {
            method: "INVITE",
            uri: format!("sip:{user}@{contact}"),
            headers: vec![
                ("Via", format!("SIP/2.0/UDP {addr};branch={branch};rport")),
                ("Max-Forwards", "70".into()),
                (
                    "From",
                    format!("\"Demo shop\" <sip:{HOTLINE}@{REALM}>;tag={tag}"),
                ),
                ("To", format!("<sip:{user}@{REALM}>")),
                ("Call-ID", call_id.clone()),
                ("CSeq", "1 INVITE".into()),
                ("Contact", format!("<sip:{HOTLINE}@{addr}>")),
                ("User-Agent", crate::USER_AGENT.into()),
            ],
            body: Some(("application/sdp", sdp::offer(media))),
        };
        // The serve loop hands this call's responses through this channel.
        let (tx, mut rx) = mpsc::channel(8);
        self.state().dialing.insert(call_id.clone(), tx);
        let result = self.ring(&invite, &branch, contact, &mut rx).await;
        self.state().dialing.remove(&call_id);
        drop(rtp);
        result
    }

    /// The INVITE transaction of [`Pbx::dial`]: resent on Timer A until a response, ended by
    /// the final one (ACKed) or Timer B.
    async fn ring(
        &self,
        invite: &Request,
        branch: &str,
        to: SocketAddr,
        responses: &mut mpsc::Receiver<Response>,
    ) -> Result<(), String> {
        let bytes = invite.to_bytes();
        self.send(&bytes, to).await;
        let mut retransmit = Some(Retransmit::invite());
        let give_up = Instant::now() + crate::sip::transaction::TIMER_F;
        loop {
            let wake = retransmit
                .as_ref()
                .map_or(give_up, |r| r.due().min(give_up));
            // A response to our INVITE, the demo stopping, or a timer: resend, or give up.
            let response = tokio::select! {
                _ = self.0.stop.cancelled() => return Err("the demo stopped".into()),
                _ = tokio::time::sleep_until(wake) => {
                    if Instant::now() >= give_up {
                        return Err("the phone did not answer the INVITE".into());
                    }
                    self.send(&bytes, to).await;
                    if let Some(r) = retransmit.as_mut() {
                        r.sent_again();
                    }
                    continue;
                }
                r = responses.recv() => r,
            };
            let Some(response) = response else {
                return Err("the PBX stopped".into());
            };
            if response.top_branch() != Some(branch) {
                continue;
            }
            match response.status {
                100..=199 => retransmit = None,
                status => {
                    // 2xx: the ACK is a request of its own, to the callee's Contact; other
                    // finals are ACKed in the INVITE's transaction (RFC 3261 17.1.1.3).
                    let ack_branch = if status < 300 {
                        format!("z9hG4bK{:016x}", rand::random::<u64>())
                    } else {
                        branch.to_string()
                    };
                    let target = if status < 300 {
                        response
                            .header("Contact")
                            .and_then(|c| c.split_once('<'))
                            .and_then(|(_, r)| r.split_once('>'))
                            .map(|(uri, _)| uri.to_string())
                            .unwrap_or_else(|| invite.uri.clone())
                    } else {
                        invite.uri.clone()
                    };
                    let ack = ack(invite, &response, &ack_branch, target, self.0.addr);
                    self.send(&ack.to_bytes(), to).await;
                    return if status < 300 {
                        Ok(())
                    } else {
                        Err(format!(
                            "the phone answered {status} {}",
                            message::printable(&response.reason, 60)
                        ))
                    };
                }
            }
        }
    }
}

/// The ACK for `invite`'s final `response`.
fn ack(
    invite: &Request,
    response: &Response,
    branch: &str,
    uri: String,
    addr: SocketAddr,
) -> Request {
    let header = |name: &str| {
        invite
            .headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    Request {
        method: "ACK",
        uri,
        headers: vec![
            ("Via", format!("SIP/2.0/UDP {addr};branch={branch};rport")),
            ("Max-Forwards", "70".into()),
            ("From", header("From")),
            ("To", response.header("To").unwrap_or_default().to_string()),
            ("Call-ID", header("Call-ID")),
            ("CSeq", "1 ACK".into()),
            ("User-Agent", crate::USER_AGENT.into()),
        ],
        body: None,
    }
}

/// The hotline's SDP answer: PCMU, sending only.
fn answer_sdp(rtp: SocketAddr) -> String {
    let session = rand::random::<u32>();
    let ip = rtp.ip();
    format!(
        "v=0\r\no=demo-pbx {session} {session} IN IP4 {ip}\r\ns=demo shop hotline\r\n\
         c=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n\
         a=sendonly\r\n",
        port = rtp.port()
    )
}

/// One RTP packet (RFC 3550, payload type 0) of the tone from sample `start` on, or of silence.
fn rtp_packet(sequence: u16, start: usize, ssrc: u32, silent: bool) -> Vec<u8> {
    let mut packet = Vec::with_capacity(12 + SAMPLES);
    packet.extend_from_slice(&[0x80, 0x00]);
    packet.extend_from_slice(&sequence.to_be_bytes());
    // The timestamp counts samples and wraps, as RTP's does.
    packet.extend_from_slice(&(start as u32).to_be_bytes());
    packet.extend_from_slice(&ssrc.to_be_bytes());
    for n in start..start + SAMPLES {
        let byte = if silent {
            0xFF // μ-law zero
        } else {
            let t = n as f64 / 8000.0;
            let value = TONE_PEAK * (2.0 * std::f64::consts::PI * 440.0 * t).sin();
            linear_to_ulaw(value as i16)
        };
        packet.push(byte);
    }
    packet
}

fn first<'a>(request: &'a IncomingRequest, name: &'a str) -> &'a str {
    request.headers_named(name).next().unwrap_or_default()
}

/// The user part of a URI, alone (`sip:100@host`) or in a header (`"X" <sip:100@host>;tag=1`).
fn uri_user(text: &str) -> Option<String> {
    let uri = match text.split_once('<') {
        Some((_, rest)) => rest.split('>').next().unwrap_or_default(),
        None => text.split(';').next().unwrap_or_default(),
    };
    let (_, rest) = uri.split_once(':')?;
    let (user, _) = rest.split_once('@')?;
    Some(user.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tone_is_loud_and_the_break_is_digital_silence() {
        let mut meter = crate::sip::audio::LevelMeter::default();
        for i in 0..50 {
            meter.add_packet(&rtp_packet(i, usize::from(i) * SAMPLES, 1, false));
        }
        let level = meter.dbfs();
        assert!((-17.0..-13.0).contains(&level), "{level}");
        let mut silence = crate::sip::audio::LevelMeter::default();
        silence.add_packet(&rtp_packet(0, 0, 1, true));
        assert_eq!(silence.dbfs(), crate::sip::audio::FLOOR_DBFS);
    }

    /// An INVITE to the hotline from `phone`, in the dialog when `to_tag` is set.
    fn hotline_invite(
        pbx: SocketAddr,
        phone: SocketAddr,
        call_id: &str,
        to_tag: Option<&str>,
        cseq: u32,
        media: SocketAddr,
    ) -> Vec<u8> {
        let sdp = format!(
            "v=0\r\no=t 1 {cseq} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
            media.port()
        );
        let tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        format!(
            "INVITE sip:{HOTLINE}@{pbx} SIP/2.0\r\nVia: SIP/2.0/UDP {phone};branch=z9hG4bK{call_id}{cseq}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:caller@127.0.0.1>;tag=caller\r\n\
             To: <sip:{HOTLINE}@{pbx}>{tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n\
             Contact: <sip:caller@{phone}>\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
        .into_bytes()
    }

    /// The next response on `socket` (at most 5 s).
    async fn next_response(socket: &UdpSocket) -> Response {
        let mut buf = vec![0u8; message::MAX_MESSAGE];
        let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
            .await
            .expect("a response within 5 s")
            .expect("receive");
        message::parse_response(&buf[..n]).expect("a SIP response")
    }

    #[tokio::test]
    async fn a_re_invite_in_a_hotline_call_is_answered_with_the_calls_sdp() {
        let stop = CancellationToken::new();
        let pbx = Pbx::start("secret".into(), Arc::new(Breaks::default()), stop.clone())
            .await
            .unwrap();
        let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        phone.connect(pbx.addr()).await.unwrap();
        let here = phone.local_addr().unwrap();
        let media = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let media_addr = media.local_addr().unwrap();
        let invite = hotline_invite(pbx.addr(), here, "hold", None, 1, media_addr);
        phone.send(&invite).await.unwrap();
        assert_eq!(next_response(&phone).await.status, 180);
        let ok = next_response(&phone).await;
        assert_eq!((ok.status, ok.cseq()), (200, Some((1, "INVITE"))));
        assert!(ok.body.contains("m=audio "), "{}", ok.body);
        let to = ok.header("To").unwrap_or_default();
        let tag = to.split(";tag=").nth(1).expect("a To tag").to_string();

        // The caller puts the call on hold: the same SDP comes back for the new CSeq.
        let reinvite = hotline_invite(pbx.addr(), here, "hold", Some(&tag), 2, media_addr);
        phone.send(&reinvite).await.unwrap();
        let held = next_response(&phone).await;
        assert_eq!((held.status, held.cseq()), (200, Some((2, "INVITE"))));
        assert_eq!(held.body, ok.body);
        assert!(held.header("To").unwrap_or_default().contains(&tag));
        // The tone goes on after it.
        let mut packet = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(5), media.recv(&mut packet))
            .await
            .expect("RTP after the re-INVITE")
            .unwrap();
        assert_eq!(n, 12 + SAMPLES);

        // An INVITE in a dialog the PBX does not have.
        let stray = hotline_invite(pbx.addr(), here, "gone", Some("x"), 2, media_addr);
        phone.send(&stray).await.unwrap();
        assert_eq!(next_response(&phone).await.status, 481);
        stop.cancel();
    }

    #[test]
    fn user_parts_of_uris_and_headers() {
        assert_eq!(
            uri_user("sip:88005550100@127.0.0.1:5060").as_deref(),
            Some("88005550100")
        );
        assert_eq!(
            uri_user("\"Shop\" <sip:79005550100@demo-shop.test>;tag=1").as_deref(),
            Some("79005550100")
        );
        assert_eq!(uri_user("sip:127.0.0.1"), None);
    }
}
