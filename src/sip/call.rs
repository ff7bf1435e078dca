//! One outgoing call (RFC 3261 13, 15, 17.1.1): the INVITE client transaction with timers A
//! and B, the ACK of its final answer (in the transaction for a refusal, a new one for a 2xx),
//! the dialog the 2xx makes (To-tag, remote target, route set), and the hang-up — BYE once
//! answered, CANCEL (and the ACK of its 487) while it still rings.
//!
//! A re-INVITE from the far end inside the confirmed dialog (a session refresh, RFC 4028, or
//! putting us on hold) is answered 200 with our unchanged SDP (RFC 3261 14.2, RFC 3264 8: an
//! unchanged session keeps its `o=` version) and its Contact becomes the dialog's remote
//! target; the call goes on. A re-INVITE for another dialog is answered 481, one that crosses
//! our own INVITE 491.
//!
//! A [`Call`] owns its connection. Dropped while the call is up (the runner cancelled the run
//! at its timeout), it hands the connection to a short task that still hangs up, so the far end
//! never keeps ringing or keeps an answered line open.

use super::SipError;
use super::message::{self, IncomingRequest, Request, Response};
use super::transaction::Retransmit;
use super::transport::Connection;
use super::uac::{AuthHeader, Client};
use super::uri::SipUri;
use std::time::Duration;
use tokio::time::Instant;

/// How long the hang-up of a dropped call may take, from the drop.
pub const DROP_HANG_UP: Duration = Duration::from_secs(2);
/// The INVITE transaction's give-up without any answer (timer B = 64·T1).
pub const TIMER_B: Duration = Duration::from_secs(32);

/// What happened to the INVITE.
#[derive(Debug)]
pub enum Event {
    /// A provisional answer (100–199).
    Provisional(Response),
    /// A 2xx: the call is answered and acknowledged; the dialog is up.
    Answered(Response),
    /// A final refusal (300–699), already acknowledged.
    Refused(Response),
}

/// How a hang-up ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangUp {
    /// There was nothing to hang up (never invited, refused, or the far end hung up).
    Nothing,
    /// BYE sent; `Some(status)` of its answer, `None` if none came in time.
    Bye(Option<u16>),
    /// CANCEL sent; `Some(status)` of the INVITE's final answer (487 normally), `None` if none
    /// came in time.
    Cancel(Option<u16>),
}

enum State {
    /// No INVITE in flight.
    Idle,
    /// The INVITE is sent; `provisional` once a 1xx came.
    Inviting { provisional: bool },
    /// Answered and acknowledged.
    Confirmed {
        /// The far end's Contact: the Request-URI of the BYE.
        remote_target: String,
        /// The To header with the far end's tag.
        to: String,
        /// Route headers (the 2xx's Record-Route, reversed).
        routes: Vec<String>,
        /// The ACK, sent again should the 2xx be retransmitted.
        ack: Vec<u8>,
    },
    /// Over: refused, cancelled, hung up.
    Ended,
}

/// A call's signalling, from INVITE to hang-up.
pub struct Call {
    conn: Option<Connection>,
    client: Client,
    /// The INVITE of the current transaction and its branch.
    invite: Option<(Request, String)>,
    state: State,
    /// Whether dropping the call hangs it up (off in the task that does so).
    hang_up_on_drop: bool,
    /// Whether the far end sent BYE.
    remote_hung_up: bool,
}

/// A received message: a response, or a request the call already answered.
enum Received {
    Response(Response),
    Handled,
}

impl Call {
    /// A call over `conn` from `from`.
    pub fn new(conn: Connection, from: SipUri) -> Call {
        Call {
            conn: Some(conn),
            client: Client::new(from),
            invite: None,
            state: State::Idle,
            hang_up_on_drop: true,
            remote_hung_up: false,
        }
    }

    /// The local address of the SIP socket.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.conn.as_ref().map(Connection::local_addr)
    }

    /// Whether the far end hung up (sent BYE).
    pub fn remote_hung_up(&self) -> bool {
        self.remote_hung_up
    }

    fn conn(&mut self) -> Result<&mut Connection, SipError> {
        self.conn
            .as_mut()
            .ok_or_else(|| SipError::Protocol("the call's connection is gone".into()))
    }

    /// Sends an INVITE to `target` offering `sdp` (a new transaction with a new CSeq; with
    /// `authorization`, the answer to the previous one's challenge).
    pub async fn invite(
        &mut self,
        target: &SipUri,
        authorization: Option<(AuthHeader, String)>,
        sdp: String,
    ) -> Result<(), SipError> {
        let conn = self
            .conn
            .as_ref()
            .ok_or_else(|| SipError::Protocol("the call's connection is gone".into()))?;
        let (mut request, branch) = self.client.request(conn, "INVITE", target, authorization);
        request.body = Some(("application/sdp", sdp));
        request.set_header("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS".to_string());
        let bytes = request.to_bytes();
        self.conn()?.send(&bytes).await?;
        self.invite = Some((request, branch));
        self.state = State::Inviting { provisional: false };
        Ok(())
    }

    /// The next answer to the INVITE, or `None` when `until` comes first. Retransmits the
    /// INVITE over UDP until a provisional answer (timer A) and gives up after [`TIMER_B`]
    /// without any answer. A refusal is acknowledged and a 2xx acknowledged and confirmed
    /// before they are returned.
    pub async fn next_event(&mut self, until: Instant) -> Result<Option<Event>, SipError> {
        let (bytes, branch, started) = match &self.invite {
            Some((request, branch)) => (request.to_bytes(), branch.clone(), Instant::now()),
            None => return Err(SipError::Protocol("no INVITE was sent".into())),
        };
        let reliable = self.conn()?.transport().reliable();
        let give_up = started + TIMER_B;
        let mut resend = Retransmit::invite();
        loop {
            let provisional = matches!(self.state, State::Inviting { provisional: true });
            let retransmit = !reliable && !provisional;
            let mut wake = until;
            if !provisional {
                wake = wake.min(give_up);
            }
            if retransmit {
                wake = wake.min(resend.due());
            }
            let received = self.recv_until(wake).await?;
            let response = match received {
                Some(Received::Response(r)) => r,
                Some(Received::Handled) => continue,
                None => {
                    let now = Instant::now();
                    if now >= until {
                        return Ok(None);
                    }
                    if !provisional && now >= give_up {
                        return Err(SipError::Timeout(TIMER_B));
                    }
                    if retransmit && now >= resend.due() {
                        self.conn()?.send(&bytes).await?;
                        resend.sent_again();
                    }
                    continue;
                }
            };
            let ours = response.top_branch() == Some(branch.as_str())
                && response.cseq().is_some_and(|(_, m)| m == "INVITE");
            if !ours {
                continue;
            }
            match response.status {
                100..=199 => {
                    self.state = State::Inviting { provisional: true };
                    return Ok(Some(Event::Provisional(response)));
                }
                200..=299 => {
                    self.confirm(&response).await?;
                    return Ok(Some(Event::Answered(response)));
                }
                _ => {
                    self.ack_refusal(&response).await?;
                    self.state = State::Ended;
                    return Ok(Some(Event::Refused(response)));
                }
            }
        }
    }

    /// The ACK of a non-2xx final answer: part of the INVITE transaction (same branch).
    async fn ack_refusal(&mut self, response: &Response) -> Result<(), SipError> {
        let Some((invite, _)) = &self.invite else {
            return Ok(());
        };
        let mut ack = invite.clone();
        ack.method = "ACK";
        ack.body = None;
        for header in [
            "Contact",
            "Accept",
            "Allow",
            "Authorization",
            "Proxy-Authorization",
        ] {
            ack.remove_header(header);
        }
        ack.set_header("CSeq", format!("{} ACK", cseq_number(invite)));
        if let Some(to) = response.header("To") {
            ack.set_header("To", to.to_string());
        }
        self.conn()?.send(&ack.to_bytes()).await
    }

    /// Records the dialog of a 2xx and sends its ACK (a transaction of its own).
    async fn confirm(&mut self, response: &Response) -> Result<(), SipError> {
        let Some((invite, _)) = &self.invite else {
            return Ok(());
        };
        let number = cseq_number(invite);
        let to = response.header("To").unwrap_or_default().to_string();
        let remote_target = response
            .header("Contact")
            .and_then(angle_uri)
            .unwrap_or_else(|| invite.uri.clone());
        let mut routes: Vec<String> = response
            .headers_named("Record-Route")
            .flat_map(|v| v.split(','))
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .collect();
        routes.reverse();
        let ack = self.in_dialog("ACK", &remote_target, &to, &routes, Some(number))?;
        let ack = ack.to_bytes();
        self.conn()?.send(&ack).await?;
        self.state = State::Confirmed {
            remote_target,
            to,
            routes,
            ack,
        };
        Ok(())
    }

    /// A request inside the dialog: new branch, the dialog's To and route set.
    fn in_dialog(
        &mut self,
        method: &'static str,
        remote_target: &str,
        to: &str,
        routes: &[String],
        cseq: Option<u32>,
    ) -> Result<Request, SipError> {
        let Some((invite, _)) = &self.invite else {
            return Err(SipError::Protocol("no INVITE was sent".into()));
        };
        let target = SipUri::parse(&invite.uri).map_err(SipError::Protocol)?;
        let conn = self
            .conn
            .as_ref()
            .ok_or_else(|| SipError::Protocol("the call's connection is gone".into()))?;
        let (mut request, _) = self.client.request(conn, method, &target, None);
        request.uri = remote_target.to_string();
        request.set_header("To", to.to_string());
        if let Some(number) = cseq {
            request.set_header("CSeq", format!("{number} {method}"));
        }
        request.remove_header("Accept");
        if method == "BYE" {
            request.remove_header("Contact");
        }
        for route in routes {
            request.headers.push(("Route", route.clone()));
        }
        Ok(request)
    }

    /// Waits until `until` while the call is up, answering what the far end sends; returns
    /// early with `true` when the far end hangs up.
    pub async fn hold(&mut self, until: Instant) -> Result<bool, SipError> {
        while !self.remote_hung_up {
            match self.recv_until(until).await? {
                None => return Ok(false),
                Some(Received::Handled) => {}
                Some(Received::Response(r)) => self.retransmitted_answer(&r).await?,
            }
        }
        Ok(true)
    }

    /// A 2xx to the INVITE again means our ACK was lost: send it again.
    async fn retransmitted_answer(&mut self, response: &Response) -> Result<(), SipError> {
        let invite_2xx = response.is_final()
            && response.status < 300
            && response.cseq().is_some_and(|(_, m)| m == "INVITE");
        if let (true, State::Confirmed { ack, .. }) = (invite_2xx, &self.state) {
            let ack = ack.clone();
            self.conn()?.send(&ack).await?;
        }
        Ok(())
    }

    /// Hangs up within `bound`: BYE when answered, CANCEL while ringing (then the ACK of the
    /// INVITE's 487), nothing otherwise.
    pub async fn hang_up(&mut self, bound: Duration) -> Result<HangUp, SipError> {
        let until = Instant::now() + bound;
        match std::mem::replace(&mut self.state, State::Ended) {
            State::Idle | State::Ended => Ok(HangUp::Nothing),
            State::Confirmed {
                remote_target,
                to,
                routes,
                ack,
            } => {
                if self.remote_hung_up {
                    return Ok(HangUp::Nothing);
                }
                let bye = self.in_dialog("BYE", &remote_target, &to, &routes, None)?;
                let status = self
                    .non_invite_until(&bye, until, Some(&ack))
                    .await?
                    .map(|r| r.status);
                Ok(HangUp::Bye(status))
            }
            State::Inviting { .. } => self.cancel(until).await.map(HangUp::Cancel),
        }
    }

    /// CANCELs the INVITE and waits for its final answer: a 487 is acknowledged; a 2xx that
    /// crossed the CANCEL is acknowledged and hung up with BYE.
    async fn cancel(&mut self, until: Instant) -> Result<Option<u16>, SipError> {
        let Some((invite, branch)) = self.invite.clone() else {
            return Ok(None);
        };
        let mut cancel = invite.clone();
        cancel.method = "CANCEL";
        cancel.body = None;
        for header in [
            "Contact",
            "Accept",
            "Allow",
            "Authorization",
            "Proxy-Authorization",
        ] {
            cancel.remove_header(header);
        }
        cancel.set_header("CSeq", format!("{} CANCEL", cseq_number(&invite)));
        let bytes = cancel.to_bytes();
        self.conn()?.send(&bytes).await?;
        let mut resend = self.resend_unless_reliable()?;
        let mut cancel_answered = false;
        loop {
            if cancel_answered {
                resend = None;
            }
            let Some(response) = self.next_answer(&bytes, until, &mut resend).await? else {
                return Ok(None);
            };
            if response.top_branch() != Some(branch.as_str()) || !response.is_final() {
                continue;
            }
            match response.cseq().map(|(_, m)| m) {
                Some("CANCEL") => cancel_answered = true,
                Some("INVITE") if response.status < 300 => {
                    // Answered just as we cancelled: acknowledge and hang up properly.
                    self.confirm(&response).await?;
                    let left = until.saturating_duration_since(Instant::now());
                    Box::pin(self.hang_up(left)).await?;
                    return Ok(Some(response.status));
                }
                Some("INVITE") => {
                    self.ack_refusal(&response).await?;
                    return Ok(Some(response.status));
                }
                _ => {}
            }
        }
    }

    /// Sends `request` (a new non-INVITE transaction) and waits until `until` for its final
    /// answer, retransmitting over UDP; resends `ack` should the INVITE's 2xx come again.
    async fn non_invite_until(
        &mut self,
        request: &Request,
        until: Instant,
        ack: Option<&Vec<u8>>,
    ) -> Result<Option<Response>, SipError> {
        let bytes = request.to_bytes();
        let branch = request
            .headers
            .iter()
            .find(|(n, _)| *n == "Via")
            .and_then(|(_, v)| v.split(";branch=").nth(1))
            .and_then(|b| b.split(';').next())
            .unwrap_or_default()
            .to_string();
        self.conn()?.send(&bytes).await?;
        let mut resend = self.resend_unless_reliable()?;
        loop {
            let Some(response) = self.next_answer(&bytes, until, &mut resend).await? else {
                return Ok(None);
            };
            if response.top_branch() == Some(branch.as_str()) && response.is_final() {
                return Ok(Some(response));
            }
            if let Some(ack) = ack
                && response.cseq().is_some_and(|(_, m)| m == "INVITE")
                && (200..300).contains(&response.status)
            {
                self.conn()?.send(ack).await?;
            }
        }
    }

    /// Timer E for a non-INVITE request just sent: none over TCP and TLS, which retransmit
    /// themselves.
    fn resend_unless_reliable(&mut self) -> Result<Option<Retransmit>, SipError> {
        let reliable = self.conn()?.transport().reliable();
        Ok((!reliable).then(Retransmit::non_invite))
    }

    /// The next response to an in-dialog non-INVITE request (`bytes`) before `until`, sending
    /// it again whenever `resend` comes due; `None` when `until` passed.
    async fn next_answer(
        &mut self,
        bytes: &[u8],
        until: Instant,
        resend: &mut Option<Retransmit>,
    ) -> Result<Option<Response>, SipError> {
        loop {
            let wake = resend.as_ref().map_or(until, |r| until.min(r.due()));
            match self.recv_until(wake).await? {
                Some(Received::Response(r)) => return Ok(Some(r)),
                Some(Received::Handled) => {}
                None if Instant::now() >= until => return Ok(None),
                None => {
                    self.conn()?.send(bytes).await?;
                    if let Some(r) = resend {
                        r.sent_again();
                    }
                }
            }
        }
    }

    /// The next response before `until`; requests from the far end are answered on the way
    /// (200 to BYE and OPTIONS, 200 with our SDP to a re-INVITE, nothing to ACK).
    async fn recv_until(&mut self, until: Instant) -> Result<Option<Received>, SipError> {
        let reliable = self.conn()?.transport().reliable();
        // `recv` is cancel-safe (a stream keeps partial messages), so timing out loses nothing.
        let received = match tokio::time::timeout_at(until, self.conn()?.recv()).await {
            Err(_) => return Ok(None),
            Ok(r) => r?,
        };
        if message::is_response(&received) {
            return match message::parse_response(&received) {
                Ok(r) => Ok(Some(Received::Response(r))),
                Err(e) if reliable => Err(SipError::Protocol(e)),
                // Over UDP a garbled datagram may be noise.
                Err(_) => Ok(Some(Received::Handled)),
            };
        }
        let request = match message::parse_request(&received) {
            Ok(r) => r,
            Err(e) if reliable => return Err(SipError::Protocol(e)),
            Err(_) => return Ok(Some(Received::Handled)),
        };
        self.answer_request(&request).await?;
        Ok(Some(Received::Handled))
    }

    async fn answer_request(&mut self, request: &IncomingRequest) -> Result<(), SipError> {
        let reply = match request.method.as_str() {
            "ACK" => return Ok(()),
            "BYE" => {
                if matches!(self.state, State::Confirmed { .. }) {
                    self.remote_hung_up = true;
                }
                request.response(200, "OK")
            }
            "INVITE" => self.reinvite(request),
            _ => request.response(200, "OK"),
        };
        self.conn()?.send(&reply).await
    }

    /// The answer to an INVITE from the far end: inside our confirmed dialog, 200 with the SDP
    /// we offered (nothing about our session changed), the new Contact becoming the target of
    /// our BYE. Over UDP a lost 200 is covered by the far end resending its re-INVITE, which
    /// gets the same answer.
    fn reinvite(&mut self, request: &IncomingRequest) -> Vec<u8> {
        let Some((invite, _)) = &self.invite else {
            return request.response(481, "Call/Transaction Does Not Exist");
        };
        let ours = |name: &str| {
            invite
                .headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        };
        let same_call = request.headers_named("Call-ID").next() == ours("Call-ID");
        let (contact, sdp) = (ours("Contact").map(str::to_string), invite.body.clone());
        match (&mut self.state, same_call) {
            (State::Confirmed { remote_target, .. }, true) => {
                if let Some(target) = request.headers_named("Contact").next().and_then(angle_uri) {
                    *remote_target = target;
                }
                let mut extra = vec![("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS".to_string())];
                if let Some(contact) = contact {
                    extra.push(("Contact", contact));
                }
                let body = sdp.as_ref().map(|(kind, text)| (*kind, text.as_str()));
                request.response_with(200, "OK", None, &extra, body)
            }
            (State::Inviting { .. }, true) => request.response(491, "Request Pending"),
            _ => request.response(481, "Call/Transaction Does Not Exist"),
        }
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        let up = matches!(self.state, State::Inviting { .. } | State::Confirmed { .. })
            && !self.remote_hung_up;
        if !self.hang_up_on_drop || !up {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let mut rest = Call {
            conn: self.conn.take(),
            client: Client::new(self.client.from().clone()),
            invite: self.invite.take(),
            state: std::mem::replace(&mut self.state, State::Ended),
            hang_up_on_drop: false,
            remote_hung_up: false,
        };
        std::mem::swap(&mut rest.client, &mut self.client);
        // The run was cancelled with the call up: hang up on the same socket in a task of its
        // own, bounded by DROP_HANG_UP, which then drops the connection. Nothing waits for it.
        runtime.spawn(async move {
            let _ = tokio::time::timeout(DROP_HANG_UP, rest.hang_up(DROP_HANG_UP)).await;
        });
    }
}

/// The CSeq number of a request we built.
fn cseq_number(request: &Request) -> u32 {
    request
        .headers
        .iter()
        .find(|(n, _)| *n == "CSeq")
        .and_then(|(_, v)| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// The URI inside `<…>` of a Contact (or the bare URI before any parameter).
fn angle_uri(header: &str) -> Option<String> {
    let header = header.split(',').next()?.trim();
    if let Some(start) = header.find('<') {
        let end = header[start..].find('>')? + start;
        return Some(header[start + 1..end].to_string());
    }
    Some(header.split(';').next()?.trim().to_string()).filter(|u| !u.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_uris_are_read_with_or_without_brackets() {
        assert_eq!(
            angle_uri("\"x\" <sip:a@10.0.0.1:5080;transport=udp>;expires=60").as_deref(),
            Some("sip:a@10.0.0.1:5080;transport=udp")
        );
        assert_eq!(
            angle_uri("sip:a@10.0.0.1;expires=60").as_deref(),
            Some("sip:a@10.0.0.1")
        );
        assert_eq!(angle_uri("<sip:a@b"), None);
    }
}
