//! One connection for one run: a connected UDP socket, a TCP stream or a TLS stream.
//!
//! The socket is opened when a run starts and dropped with it, so a cancelled run leaves
//! nothing open. Its real local address goes into Via and Contact (a NAT rewrites it, and
//! `rport` asks the server to answer where the request really came from).

use super::SipError;
use super::message::{self, MAX_MESSAGE};
use super::uri::{SipUri, Transport};
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// A byte stream SIP can run over (TCP or TLS).
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

enum Inner {
    Udp(UdpSocket),
    Stream(Box<dyn Stream>),
}

/// An open connection to one SIP server.
pub struct Connection {
    inner: Inner,
    transport: Transport,
    local: SocketAddr,
    peer: SocketAddr,
    /// Bytes read from a stream and not yet returned as a message.
    pending: Vec<u8>,
    /// The server was found through an SRV record.
    by_srv: bool,
}

impl Connection {
    /// Finds `uri`'s server through the system's resolvers and connects; TLS needs `tls`.
    pub async fn open(
        uri: &SipUri,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> Result<Connection, SipError> {
        Connection::open_via(uri, tls, None).await
    }

    /// Finds `uri`'s server (SRV, else A/AAAA: [`super::locate`]), asking `nameserver` when
    /// set, and connects with the transport found; TLS needs `tls` (the trust of the account
    /// or check) and verifies the URI's host name, not the SRV target's (RFC 5922 4.2).
    pub async fn open_via(
        uri: &SipUri,
        tls: Option<&tokio_rustls::TlsConnector>,
        nameserver: Option<SocketAddr>,
    ) -> Result<Connection, SipError> {
        let located = super::locate::locate(uri, nameserver).await?;
        let peer = located.addr;
        let connect_error = |source| SipError::Connect {
            peer: peer.to_string(),
            source,
        };
        let (inner, local) = match located.transport {
            Transport::Udp => {
                let any: SocketAddr = if peer.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = UdpSocket::bind(any).await.map_err(connect_error)?;
                // Connected: the kernel drops datagrams from anyone else and reports ICMP
                // "port unreachable" as a refused receive, so a dead PBX fails fast.
                socket.connect(peer).await.map_err(connect_error)?;
                let local = socket.local_addr().map_err(connect_error)?;
                (Inner::Udp(socket), local)
            }
            Transport::Tcp | Transport::Tls => {
                let tcp = TcpStream::connect(peer).await.map_err(connect_error)?;
                // Requests are small and sent whole; don't let Nagle hold them back.
                let _ = tcp.set_nodelay(true);
                let local = tcp.local_addr().map_err(connect_error)?;
                let stream: Box<dyn Stream> = match (located.transport, tls) {
                    (Transport::Tls, Some(connector)) => {
                        let name = rustls::pki_types::ServerName::try_from(uri.host.clone())
                            .map_err(|e| SipError::Tls {
                                peer: peer.to_string(),
                                source: std::io::Error::other(e),
                            })?;
                        let tls =
                            connector
                                .connect(name, tcp)
                                .await
                                .map_err(|source| SipError::Tls {
                                    peer: peer.to_string(),
                                    source,
                                })?;
                        Box::new(tls)
                    }
                    (Transport::Tls, None) => {
                        return Err(SipError::Tls {
                            peer: peer.to_string(),
                            source: std::io::Error::other("no TLS settings for this connection"),
                        });
                    }
                    (Transport::Tcp | Transport::Udp, _) => Box::new(tcp),
                };
                (Inner::Stream(stream), local)
            }
        };
        Ok(Connection {
            inner,
            transport: located.transport,
            local,
            peer,
            pending: Vec::new(),
            by_srv: located.by_srv,
        })
    }

    /// Whether the server was found through an SRV record (RFC 3263).
    pub fn found_by_srv(&self) -> bool {
        self.by_srv
    }

    /// The transport in use.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The local address of the socket (for Via and Contact).
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The server's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// Sends one message.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), SipError> {
        let peer = self.peer;
        let error = |source| SipError::Connect {
            peer: peer.to_string(),
            source,
        };
        match &mut self.inner {
            Inner::Udp(socket) => socket.send(bytes).await.map(|_| ()).map_err(error),
            Inner::Stream(stream) => {
                stream.write_all(bytes).await.map_err(error)?;
                stream.flush().await.map_err(error)
            }
        }
    }

    /// Receives one message: a datagram, or the next complete message of the stream.
    /// Cancel-safe: bytes read from a stream are kept until their message is complete.
    pub async fn recv(&mut self) -> Result<Vec<u8>, SipError> {
        let peer = self.peer;
        let error = |source| SipError::Connect {
            peer: peer.to_string(),
            source,
        };
        match &mut self.inner {
            Inner::Udp(socket) => {
                let mut buf = vec![0u8; MAX_MESSAGE];
                let n = socket.recv(&mut buf).await.map_err(error)?;
                buf.truncate(n);
                Ok(buf)
            }
            Inner::Stream(stream) => loop {
                if let Some(n) = message::frame(&self.pending).map_err(SipError::Protocol)? {
                    let rest = self.pending.split_off(n);
                    return Ok(std::mem::replace(&mut self.pending, rest));
                }
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.map_err(error)?;
                if n == 0 {
                    return Err(error(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the server closed the connection",
                    )));
                }
                self.pending.extend_from_slice(&chunk[..n]);
            },
        }
    }
}
