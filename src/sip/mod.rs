//! A small SIP user-agent client: just what a prober needs, over UDP, TCP and TLS.
//!
//! supportwatch only ever *sends* requests and judges the answers, so this is the client half
//! of RFC 3261 and nothing more: SIP URIs (`uri`), building requests and parsing responses with
//! hard size caps (`message`), digest authentication with MD5 and SHA-256 (`digest`, RFC 8760),
//! one connection per run (`transport`: `rport`, Via and Contact from the socket actually
//! used; the server found through SRV records as RFC 3263 says, `locate`) and the non-INVITE
//! client transaction with its retransmission timers (`transaction`).
//! A call (`call`) adds the INVITE transaction, its dialog and the hang-up, with an SDP offer
//! of G.711 (`sdp`) and the level of the audio heard (`audio`).
//!
//! Everything here lives for one run: a probe opens a [`transport::Connection`], runs its
//! transactions and drops it, so no socket outlives the run even when the runner cancels it.
//! The one exception is a registered account (`register: true`): its [`line::Lines`] entry is
//! a long-lived task the daemon owns, holding one socket that receives calls.

pub mod account;
pub mod audio;
pub mod call;
pub mod digest;
pub mod line;
pub mod locate;
pub mod message;
pub mod sdp;
pub mod transaction;
pub mod transport;
pub mod uac;
pub mod uri;

pub use account::PhoneSpec;
pub use message::Response;
pub use uri::{SipUri, Transport};

/// What can go wrong below the level of SIP status codes.
#[derive(Debug, thiserror::Error)]
pub enum SipError {
    /// The host name did not resolve.
    #[error("cannot resolve {host}: {source}")]
    Dns {
        /// The host.
        host: String,
        /// Why.
        source: std::io::Error,
    },
    /// The socket could not be opened or connected, or the peer refused or reset it.
    #[error("cannot reach {peer}: {source}")]
    Connect {
        /// `host:port`.
        peer: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake with {peer} failed: {source}")]
    Tls {
        /// `host:port`.
        peer: String,
        /// Why.
        source: std::io::Error,
    },
    /// No final response before the transaction timed out (RFC 3261 Timer F).
    #[error("no final response within {0:?}")]
    Timeout(std::time::Duration),
    /// The peer sent something that is not a SIP response we can read.
    #[error("the server broke the protocol: {0}")]
    Protocol(String),
}
