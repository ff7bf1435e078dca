//! SIP URIs as a prober writes them: `sip:` / `sips:`, an optional user, a host, a port and the
//! `transport` parameter. Other parameters and headers are refused rather than half-understood.

use std::fmt;

/// How requests travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Datagrams, with retransmissions.
    Udp,
    /// One TCP connection.
    Tcp,
    /// One TLS connection over TCP (`sips:` or `;transport=tls`).
    Tls,
}

impl Transport {
    /// The name in a Via header (`SIP/2.0/UDP`).
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    /// Whether the transport retransmits itself (TCP, TLS): then the client does not.
    pub fn reliable(self) -> bool {
        match self {
            Transport::Udp => false,
            Transport::Tcp | Transport::Tls => true,
        }
    }
}

/// A parsed `sip:` or `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// `sips:`: TLS end to end.
    pub secure: bool,
    /// The user part (a number or a name), if any.
    pub user: Option<String>,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// The explicit port, if any.
    pub port: Option<u16>,
    /// The transport: from `;transport=`, else TLS for `sips:`, else UDP.
    pub transport: Transport,
    /// Whether `;transport=` was written (an SRV lookup then asks for that transport only).
    pub transport_explicit: bool,
}

impl SipUri {
    /// Parses `sip:[user@]host[:port][;transport=udp|tcp|tls]`.
    pub fn parse(text: &str) -> Result<SipUri, String> {
        let text = text.trim();
        let (secure, rest) = if let Some(rest) = strip_prefix_ci(text, "sips:") {
            (true, rest)
        } else if let Some(rest) = strip_prefix_ci(text, "sip:") {
            (false, rest)
        } else {
            return Err(
                "a SIP URI starts with `sip:` or `sips:`, e.g. `sip:pbx.shop.example`".into(),
            );
        };
        if rest.contains('?') {
            return Err("URI headers (`?…`) are not supported here".into());
        }
        let mut parts = rest.split(';');
        let address = parts.next().unwrap_or_default();
        let mut transport = None;
        for param in parts {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            if !name.eq_ignore_ascii_case("transport") {
                return Err(format!(
                    "URI parameter `{name}` is not supported; only `transport=udp|tcp|tls`"
                ));
            }
            transport = Some(match value.to_ascii_lowercase().as_str() {
                "udp" => Transport::Udp,
                "tcp" => Transport::Tcp,
                "tls" => Transport::Tls,
                other => {
                    return Err(format!(
                        "transport `{other}` is not supported; use udp, tcp or tls"
                    ));
                }
            });
        }
        let (user, hostport) = match address.rsplit_once('@') {
            Some((user, hostport)) => (Some(user), hostport),
            None => (None, address),
        };
        if let Some(user) = user
            && (user.is_empty() || !user.chars().all(is_user_char))
        {
            return Err(format!(
                "the user part `{user}` has characters a SIP URI cannot carry"
            ));
        }
        let (host, port) = split_host_port(hostport)?;
        let transport_explicit = transport.is_some();
        let transport = match (secure, transport) {
            (true, Some(Transport::Udp | Transport::Tcp)) => {
                return Err("a `sips:` URI must use TLS; drop the transport parameter".into());
            }
            (true, _) => Transport::Tls,
            (false, Some(t)) => t,
            (false, None) => Transport::Udp,
        };
        Ok(SipUri {
            secure,
            user: user.map(str::to_string),
            host,
            port,
            transport,
            transport_explicit,
        })
    }

    /// The port to connect to when no SRV record says otherwise: explicit, else 5061 for TLS
    /// and 5060 otherwise.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(match self.transport {
            Transport::Tls => 5061,
            Transport::Udp | Transport::Tcp => 5060,
        })
    }

    /// The host as written in a URI or Via (IPv6 in brackets).
    pub fn host_for_uri(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// The same URI with another user part (`None`: none).
    pub fn with_user(&self, user: Option<&str>) -> SipUri {
        SipUri {
            user: user.map(str::to_string),
            ..self.clone()
        }
    }
}

impl fmt::Display for SipUri {
    /// The URI as sent on the wire (Request-URI, To); the transport parameter only when it is
    /// not the scheme's default.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        f.write_str(&self.host_for_uri())?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        match (self.secure, self.transport) {
            (false, Transport::Tcp) => f.write_str(";transport=tcp"),
            (false, Transport::Tls) => f.write_str(";transport=tls"),
            (false, Transport::Udp) | (true, _) => Ok(()),
        }
    }
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// RFC 3261 `user` characters: unreserved, escapes and the user-unreserved set.
fn is_user_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()%&=+$,;?/".contains(c)
}

fn split_host_port(hostport: &str) -> Result<(String, Option<u16>), String> {
    let bad_port = |p: &str| format!("port `{p}` is not a number from 1 to 65535");
    let parse_port = |p: &str| match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad_port(p)),
        Ok(n) => Ok(n),
    };
    let (host, port) = if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| "an IPv6 address needs its closing `]`".to_string())?;
        host.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("`{host}` is not an IPv6 address"))?;
        match after.strip_prefix(':') {
            Some(p) => (host.to_string(), Some(parse_port(p)?)),
            None if after.is_empty() => (host.to_string(), None),
            None => return Err(format!("unexpected `{after}` after the address")),
        }
    } else {
        match hostport.split_once(':') {
            Some((host, p)) => (host.to_string(), Some(parse_port(p)?)),
            None => (hostport.to_string(), None),
        }
    };
    let valid = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':'));
    if !valid {
        return Err(format!("`{host}` is not a host name or IP address"));
    }
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_a_config_uses() {
        let u = SipUri::parse("sip:pbx.shop.example").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.transport),
            ("pbx.shop.example", None, Transport::Udp)
        );
        assert_eq!(u.effective_port(), 5060);
        let u = SipUri::parse("sip:100@10.0.0.1:5080;transport=TCP").unwrap();
        assert_eq!(u.user.as_deref(), Some("100"));
        assert_eq!((u.port, u.transport), (Some(5080), Transport::Tcp));
        assert_eq!(u.to_string(), "sip:100@10.0.0.1:5080;transport=tcp");
        let u = SipUri::parse("sips:[::1]").unwrap();
        assert_eq!(
            (u.host.as_str(), u.transport, u.effective_port()),
            ("::1", Transport::Tls, 5061)
        );
        assert_eq!(u.to_string(), "sips:[::1]");
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        for bad in [
            "http://pbx",
            "sip:",
            "sip:pbx:0",
            "sip:pbx:99999",
            "sip:pbx;transport=sctp",
            "sip:pbx;lr",
            "sips:pbx;transport=udp",
            "sip:a b@pbx",
            "sip:pbx?subject=x",
            "sip:[::1",
        ] {
            assert!(SipUri::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
