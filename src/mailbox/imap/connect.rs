//! One IMAP connection up to an authenticated session: TCP, TLS (implicit, or after STARTTLS,
//! which is required on `imap://`), the greeting, LOGIN or AUTHENTICATE PLAIN, CAPABILITY.
//!
//! Each step is bounded, and each failure says which step failed and where: connect errors name
//! `host:port`, certificate problems are TLS errors, a rejected password is a login error that
//! carries the server's short explanation but never the password (see [`super::wire`]).

use super::wire::{Wire, base64};
use super::{COMMAND_TIMEOUT, CONNECT_TIMEOUT, ImapStore};
use crate::mailbox::{ImapAuth, MailStore, MailboxError};
use async_imap::imap_proto::{Response, Status};
use async_imap::types::Capability;
use async_imap::{Authenticator, Client, Session};
use std::time::Duration;
use tokio::net::TcpStream;

/// Longest server explanation quoted in an error message.
const MAX_SERVER_TEXT: usize = 120;

/// What the server offers after login, as far as sessions care.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Caps {
    pub idle: bool,
    pub uidplus: bool,
    pub quota: bool,
}

/// Connects, secures, greets and logs in.
pub(super) async fn login(store: &ImapStore) -> Result<(Session<Wire>, Caps), MailboxError> {
    let what = store.describe();
    let addr = store.target.addr();
    let connect_error = |reason: String| MailboxError::Connect {
        what: what.clone(),
        addr: addr.clone(),
        reason,
    };
    let tls_error = |reason: String| MailboxError::Tls {
        what: what.clone(),
        addr: addr.clone(),
        reason,
    };

    let host = store.target.host.as_str();
    let tcp = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect((host, store.target.port)),
    )
    .await
    {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(connect_error(e.to_string())),
        Err(_) => return Err(connect_error(timed_out(CONNECT_TIMEOUT))),
    };
    // Commands are small writes answered at once; Nagle would add delayed-ACK waits.
    let _ = tcp.set_nodelay(true);

    let tcp = if store.target.implicit_tls {
        tcp
    } else {
        match tokio::time::timeout(CONNECT_TIMEOUT, starttls(tcp)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(Refusal::Tls(reason))) => return Err(tls_error(reason)),
            Ok(Err(Refusal::Protocol(reason))) => {
                return Err(MailboxError::Protocol { what, reason });
            }
            Err(_) => {
                return Err(tls_error(format!(
                    "STARTTLS {}",
                    timed_out(CONNECT_TIMEOUT)
                )));
            }
        }
    };

    let tls = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        store.tls.connect(store.server_name.clone(), tcp),
    )
    .await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return Err(tls_error(format!("handshake failed: {e}"))),
        Err(_) => {
            return Err(tls_error(format!(
                "handshake {}",
                timed_out(CONNECT_TIMEOUT)
            )));
        }
    };
    let mut client = Client::new(Wire::new(tls));
    if store.target.implicit_tls {
        // After STARTTLS there is no second greeting; on imaps:// the first one comes over TLS.
        match tokio::time::timeout(COMMAND_TIMEOUT, greeting(&mut client)).await {
            Ok(Ok(())) => {}
            Ok(Err(Refusal::Tls(reason) | Refusal::Protocol(reason))) => {
                return Err(MailboxError::Protocol { what, reason });
            }
            Err(_) => {
                return Err(MailboxError::Protocol {
                    what,
                    reason: format!("greeting {}", timed_out(COMMAND_TIMEOUT)),
                });
            }
        }
    }

    let mut session = authenticate(store, client).await?;
    let caps = match tokio::time::timeout(COMMAND_TIMEOUT, session.capabilities()).await {
        Ok(Ok(caps)) => {
            let has = |name: &str| {
                caps.iter()
                    .any(|c| matches!(c, Capability::Atom(a) if a.eq_ignore_ascii_case(name)))
            };
            Caps {
                idle: has("IDLE"),
                uidplus: has("UIDPLUS"),
                quota: has("QUOTA"),
            }
        }
        Ok(Err(e)) => {
            return Err(MailboxError::Protocol {
                what,
                reason: format!("CAPABILITY failed: {}", describe_error(&e)),
            });
        }
        Err(_) => {
            return Err(MailboxError::Protocol {
                what,
                reason: format!("CAPABILITY {}", timed_out(COMMAND_TIMEOUT)),
            });
        }
    };
    Ok((session, caps))
}

/// Why the plain-text part of a connection failed.
enum Refusal {
    /// TLS cannot be started.
    Tls(String),
    /// The server does not speak IMAP as expected.
    Protocol(String),
}

/// Reads the greeting, which must be `* OK`.
async fn greeting<T>(client: &mut Client<T>) -> Result<(), Refusal>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    let response = client
        .read_response()
        .await
        .map_err(|e| Refusal::Protocol(format!("no greeting: {e}")))?
        .ok_or_else(|| Refusal::Protocol("closed the connection before greeting".into()))?;
    match response.parsed() {
        Response::Data {
            status: Status::Ok, ..
        } => Ok(()),
        Response::Data { status, outcome } => Err(Refusal::Protocol(format!(
            "the server greeted with {status:?}{}",
            outcome
                .information
                .as_deref()
                .map(|t| format!(": {}", short(t)))
                .unwrap_or_default()
        ))),
        _ => Err(Refusal::Protocol(
            "the server's greeting is not an IMAP greeting".into(),
        )),
    }
}

/// Greeting and STARTTLS over plain TCP; returns the bare connection for the TLS handshake.
async fn starttls(tcp: TcpStream) -> Result<TcpStream, Refusal> {
    let mut client = Client::new(tcp);
    greeting(&mut client).await?;
    match client.run_command_and_check_ok("STARTTLS", None).await {
        Ok(()) => {}
        Err(async_imap::error::Error::No(_) | async_imap::error::Error::Bad(_)) => {
            return Err(Refusal::Tls("server does not offer STARTTLS".into()));
        }
        Err(e) => {
            return Err(Refusal::Tls(format!(
                "STARTTLS failed: {}",
                describe_error(&e)
            )));
        }
    }
    // Anything the server sent after its OK and before the handshake is dropped with the
    // client's buffer, never read as if it had come over TLS (CVE-2011-0411).
    Ok(client.into_inner())
}

/// AUTHENTICATE PLAIN (RFC 4616) with an empty authorization identity.
struct Plain {
    response: Vec<u8>,
}

impl Authenticator for Plain {
    type Response = Vec<u8>;
    fn process(&mut self, _challenge: &[u8]) -> Vec<u8> {
        self.response.clone()
    }
}

/// Logs in, handing async-imap only a placeholder for the password (see [`super::wire`]).
async fn authenticate(
    store: &ImapStore,
    mut client: Client<Wire>,
) -> Result<Session<Wire>, MailboxError> {
    let user = store.user.clone();
    let password = store.password.expose();
    let login_error = |reason: String| MailboxError::Login {
        user: user.clone(),
        reason,
    };
    let placeholder = placeholder();
    let mechanism = match store.auth {
        ImapAuth::Login => "LOGIN",
        ImapAuth::Plain => "AUTHENTICATE PLAIN",
    };
    let attempt = match store.auth {
        ImapAuth::Login => {
            if password.contains(['\r', '\n', '\0']) {
                return Err(login_error(
                    "the password contains a line break or NUL, which LOGIN cannot send".into(),
                ));
            }
            // LOGIN sends the password as a quoted string; async-imap quotes the placeholder,
            // which has nothing to escape, so the secret is escaped here the same way.
            let quoted = password.replace('\\', "\\\\").replace('"', "\\\"");
            client
                .get_mut()
                .arm(placeholder.clone().into_bytes(), quoted.into_bytes());
            tokio::time::timeout(COMMAND_TIMEOUT, client.login(&user, &placeholder)).await
        }
        ImapAuth::Plain => {
            if password.contains('\0') {
                return Err(login_error(
                    "the password contains NUL, which AUTHENTICATE PLAIN cannot send".into(),
                ));
            }
            let response = |secret: &str| format!("\0{user}\0{secret}").into_bytes();
            client.get_mut().arm(
                base64(&response(&placeholder)).into_bytes(),
                base64(&response(password)).into_bytes(),
            );
            let plain = Plain {
                response: response(&placeholder),
            };
            tokio::time::timeout(COMMAND_TIMEOUT, client.authenticate("PLAIN", plain)).await
        }
    };
    match attempt {
        Ok(Ok(mut session)) => {
            session.get_mut().disarm();
            Ok(session)
        }
        Ok(Err((async_imap::error::Error::No(text), _))) => {
            let said = server_text(&text);
            if is_temporary(&said) {
                // Not a verdict on the password: the watcher tries again instead of failing
                // every waiting run at once.
                return Err(MailboxError::Protocol {
                    what: store.describe(),
                    reason: format!("the server cannot log us in right now (\"{said}\")"),
                });
            }
            Err(login_error(if said.is_empty() {
                "authentication rejected".into()
            } else {
                format!("authentication rejected (server: \"{said}\")")
            }))
        }
        Ok(Err((async_imap::error::Error::Bad(text), _))) => Err(login_error(format!(
            "the server refused {mechanism} (\"{}\"); try `auth: {}`",
            server_text(&text),
            match store.auth {
                ImapAuth::Login => "plain",
                ImapAuth::Plain => "login",
            }
        ))),
        Ok(Err((e, _))) => Err(MailboxError::Protocol {
            what: store.describe(),
            reason: format!("{mechanism} failed: {}", describe_error(&e)),
        }),
        Err(_) => Err(MailboxError::Protocol {
            what: store.describe(),
            reason: format!("{mechanism} {}", timed_out(COMMAND_TIMEOUT)),
        }),
    }
}

/// RFC 5530 codes of a NO that says "not now" rather than "wrong credentials".
fn is_temporary(said: &str) -> bool {
    ["[UNAVAILABLE]", "[INUSE]", "[LIMIT]"]
        .iter()
        .any(|code| said.starts_with(code))
}

/// A random stand-in for the password: letters and digits only, so that no quoting or encoding
/// changes it on its way through async-imap.
fn placeholder() -> String {
    format!(
        "{:016x}{:016x}",
        rand::random::<u64>(),
        rand::random::<u64>()
    )
}

/// `timed out after 30s`.
pub(super) fn timed_out(after: Duration) -> String {
    format!("timed out after {}s", after.as_secs())
}

/// An async-imap error for a message: NO and BAD carry the server's text.
pub(super) fn describe_error(e: &async_imap::error::Error) -> String {
    use async_imap::error::Error;
    match e {
        Error::No(text) => format!("the server answered NO: {}", server_text(text)),
        Error::Bad(text) => format!("the server answered BAD: {}", server_text(text)),
        Error::ConnectionLost => "the connection was lost".into(),
        other => short(&other.to_string()),
    }
}

/// The server's explanation inside async-imap's NO/BAD text, which reads
/// `code: Some(…), info: Some("Authentication failed.")`; shortened for messages.
pub(super) fn server_text(text: &str) -> String {
    let info = text
        .split_once("info: Some(\"")
        .and_then(|(_, rest)| rest.rsplit_once("\")"))
        .map(|(inner, _)| inner.replace("\\\"", "\"").replace("\\\\", "\\"));
    match info {
        Some(info) => short(&info),
        None if text.contains("info: None") => String::new(),
        None => short(text),
    }
}

/// `text` on one line and at most [`MAX_SERVER_TEXT`] characters.
fn short(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let line = line.trim();
    if line.chars().count() <= MAX_SERVER_TEXT {
        line.to_string()
    } else {
        let cut: String = line.chars().take(MAX_SERVER_TEXT).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_text_is_taken_from_async_imap_errors() {
        assert_eq!(
            server_text(
                r#"code: None, info: Some("[AUTHENTICATIONFAILED] Authentication \"failed\".")"#
            ),
            r#"[AUTHENTICATIONFAILED] Authentication "failed"."#
        );
        assert_eq!(server_text("code: None, info: None"), "");
        assert_eq!(server_text("something else"), "something else");
        let long = format!("code: None, info: Some(\"{}\")", "x".repeat(500));
        assert_eq!(server_text(&long).chars().count(), MAX_SERVER_TEXT + 1);
    }

    #[test]
    fn only_some_refusals_are_temporary() {
        assert!(is_temporary(
            "[UNAVAILABLE] Temporary authentication failure."
        ));
        assert!(is_temporary("[INUSE] Mailbox is locked"));
        assert!(!is_temporary(
            "[AUTHENTICATIONFAILED] Authentication failed."
        ));
        assert!(!is_temporary("Authentication failed."));
    }

    #[test]
    fn placeholders_need_no_quoting() {
        let p = placeholder();
        assert_eq!(p.len(), 32);
        assert!(p.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(p, placeholder());
    }
}
