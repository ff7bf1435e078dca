//! The byte stream under async-imap: TLS over TCP, with the password swapped in below the logs.
//!
//! async-imap writes every command it sends to the `log` crate at trace level — LOGIN's password
//! and AUTHENTICATE's response included — and the daemon forwards `log` records to tracing, so
//! `RUST_LOG=trace` would print the password. The library is therefore only ever given a random
//! placeholder; [`Wire`] replaces it with the real bytes on their way to the socket, and only while
//! the login is in progress ([`Wire::arm`] / [`Wire::disarm`]).

use base64::Engine;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The connection an IMAP session runs over.
pub(super) struct Wire {
    inner: TlsStream<TcpStream>,
    /// (placeholder, secret) pairs replaced in outgoing writes while armed.
    swaps: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bytes accepted from a write that carried a placeholder, not yet passed on.
    pending: Vec<u8>,
}

impl std::fmt::Debug for Wire {
    // Required by async-imap's bounds; says nothing about the stream or the secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wire")
    }
}

impl Wire {
    pub(super) fn new(inner: TlsStream<TcpStream>) -> Self {
        Wire {
            inner,
            swaps: Vec::new(),
            pending: Vec::new(),
        }
    }

    /// Replace `placeholder` by `secret` in what is written from now on.
    pub(super) fn arm(&mut self, placeholder: Vec<u8>, secret: Vec<u8>) {
        self.swaps.push((placeholder, secret));
    }

    /// Stop replacing, and forget the secrets.
    pub(super) fn disarm(&mut self) {
        self.swaps.clear();
    }

    /// `buf` with every placeholder replaced, or `None` when it holds none.
    fn swapped(&self, buf: &[u8]) -> Option<Vec<u8>> {
        let mut out: Option<Vec<u8>> = None;
        for (from, to) in &self.swaps {
            let current = out.as_deref().unwrap_or(buf);
            if let Some(replaced) = replace_all(current, from, to) {
                out = Some(replaced);
            }
        }
        out
    }

    /// Writes `pending` through to the TLS stream.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Option<Vec<u8>> {
    if from.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    let mut rest = haystack;
    let mut found = false;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        found = true;
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    found.then_some(out)
}

impl AsyncRead for Wire {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        // async-imap hands each command line to one `write_all`, whose first call carries the
        // whole line, so a placeholder is never split between two writes.
        if let Some(replaced) = this.swapped(buf) {
            this.pending = replaced;
            // Accept the caller's bytes now; what cannot be written yet goes out on the next
            // write or flush (async-imap flushes after every command).
            if let Poll::Ready(Err(e)) = this.poll_drain(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Standard base64 with padding (RFC 4648), as async-imap encodes AUTHENTICATE responses.
pub(crate) fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_placeholder_and_only_when_present() {
        assert_eq!(
            replace_all(b"a1 LOGIN \"u\" \"PH\" PH", b"PH", b"s\\\"x").as_deref(),
            Some(&b"a1 LOGIN \"u\" \"s\\\"x\" s\\\"x"[..])
        );
        assert_eq!(replace_all(b"a2 SELECT INBOX", b"PH", b"secret"), None);
        assert_eq!(replace_all(b"anything", b"", b"secret"), None);
    }
}
