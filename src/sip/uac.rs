//! Requests outside a dialog from one user agent: the headers every request carries (Via from
//! the real socket with `rport`, From with a tag, Call-ID, CSeq, Max-Forwards, Contact), and
//! the answer to a 401/407 challenge as a new request in the same call.

use super::digest::{Challenge, Credentials};
use super::message::{Request, Response};
use super::transport::Connection;
use super::uri::SipUri;

/// One user agent's side of a series of requests sharing a Call-ID (a ping and its
/// authenticated retry).
pub struct Client {
    from: SipUri,
    tag: String,
    call_id: String,
    cseq: u32,
}

/// Which header carries the answer to a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthHeader {
    /// `Authorization`, answering a 401's `WWW-Authenticate`.
    Authorization,
    /// `Proxy-Authorization`, answering a 407's `Proxy-Authenticate`.
    ProxyAuthorization,
}

impl Client {
    /// A client sending as `from` (`sip:user@domain`).
    pub fn new(from: SipUri) -> Client {
        Client {
            from,
            tag: format!("{:016x}", rand::random::<u64>()),
            call_id: format!("{:032x}@supportwatch", rand::random::<u128>()),
            cseq: 0,
        }
    }

    /// The From URI.
    pub fn from(&self) -> &SipUri {
        &self.from
    }

    /// A new request of this call with its own branch, addressed to `target`, its Via and Contact
    /// naming `conn`'s local socket. Returns the request and its branch.
    pub fn request(
        &mut self,
        conn: &Connection,
        method: &'static str,
        target: &SipUri,
        authorization: Option<(AuthHeader, String)>,
    ) -> (Request, String) {
        self.cseq += 1;
        let branch = format!("z9hG4bK{:016x}", rand::random::<u64>());
        let local = conn.local_addr();
        let transport = conn.transport();
        let sent_by = match local {
            std::net::SocketAddr::V4(a) => a.to_string(),
            std::net::SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
        };
        let mut contact = self.from.with_user(self.from.user.as_deref());
        contact.host = local.ip().to_string();
        contact.port = Some(local.port());
        contact.transport = transport;
        let mut headers = vec![
            (
                "Via",
                format!(
                    "SIP/2.0/{} {sent_by};branch={branch};rport",
                    transport.via_name()
                ),
            ),
            ("Max-Forwards", "70".to_string()),
            ("From", format!("<{}>;tag={}", self.from, self.tag)),
            ("To", format!("<{target}>")),
            ("Call-ID", self.call_id.clone()),
            ("CSeq", format!("{} {method}", self.cseq)),
            ("Contact", format!("<{contact}>")),
            ("User-Agent", crate::USER_AGENT.to_string()),
            ("Accept", "application/sdp".to_string()),
        ];
        if let Some((header, value)) = authorization {
            headers.push((
                match header {
                    AuthHeader::Authorization => "Authorization",
                    AuthHeader::ProxyAuthorization => "Proxy-Authorization",
                },
                value,
            ));
        }
        let request = Request {
            method,
            uri: target.to_string(),
            headers,
            body: None,
        };
        (request, branch)
    }
}

/// The answer to a 401 or 407 `response` for `method` to `target`, or why there is none.
pub fn answer_challenge(
    response: &Response,
    credentials: &Credentials<'_>,
    method: &str,
    target: &SipUri,
) -> Result<(AuthHeader, String), String> {
    let (challenge_header, answer_header) = match response.status {
        401 => ("WWW-Authenticate", AuthHeader::Authorization),
        407 => ("Proxy-Authenticate", AuthHeader::ProxyAuthorization),
        other => return Err(format!("status {other} is not a challenge")),
    };
    let challenge = Challenge::best(response.headers_named(challenge_header))?;
    let cnonce = format!("{:016x}", rand::random::<u64>());
    Ok((
        answer_header,
        challenge.answer(credentials, method, &target.to_string(), &cnonce),
    ))
}
