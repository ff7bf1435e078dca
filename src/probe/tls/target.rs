//! Parsing a `tls` check's targets: `host:port`, `[v6]:port` or `scheme://host[:port]`.
//!
//! Apart from the probe because it runs at load time as well (`validate`) and is all string
//! handling: which scheme means which protocol, STARTTLS and default port, and the messages for
//! what is wrong (which never repeat the value: it may have come from the environment).

use super::starttls::Protocol;
use rustls::pki_types::ServerName;
use std::net::Ipv6Addr;

/// A parsed target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    /// Host name or IP address, without IPv6 brackets.
    pub(super) host: String,
    /// The host as a name to send and verify (an IP address stays an IP address).
    pub(super) name: ServerName<'static>,
    pub(super) port: u16,
    /// Whether the port was written (else it is the scheme's), so a `resolve:` override's port
    /// applies only to targets that name none, as for URLs.
    pub(super) port_explicit: bool,
    /// What the server speaks, when known (`https` and `tls` speak nothing we know of).
    pub(super) protocol: Option<Protocol>,
    /// Upgrade a plain connection with STARTTLS before the handshake.
    pub(super) starttls: bool,
}

const SCHEMES: &str = "tls://, https://, imaps://, smtps://, pop3s://, smtp+starttls://, \
                       imap+starttls:// or pop3+starttls://";

/// Parses a target. Messages never repeat the value: it may have come from the environment.
pub(super) fn parse_target(text: &str) -> Result<Target, String> {
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
        None => (None, text),
    };
    let (protocol, starttls, default_port) = match scheme.as_deref() {
        None | Some("tls") => (None, false, None),
        Some("https") => (None, false, Some(443)),
        Some("imaps") => (Some(Protocol::Imap), false, Some(993)),
        Some("smtps") => (Some(Protocol::Smtp), false, Some(465)),
        Some("pop3s") => (Some(Protocol::Pop3), false, Some(995)),
        Some("smtp+starttls") => (Some(Protocol::Smtp), true, Some(587)),
        Some("imap+starttls") => (Some(Protocol::Imap), true, Some(143)),
        Some("pop3+starttls") => (Some(Protocol::Pop3), true, Some(110)),
        Some(_) => return Err(format!("unknown scheme; use host:port or {SCHEMES}")),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err("a target is `host:port` or `scheme://host:port`, without path or user".into());
    }
    let (host, port) = if let Some(after) = rest.strip_prefix('[') {
        let (inner, tail) = after
            .split_once(']')
            .ok_or("missing `]` after the IPv6 address")?;
        inner
            .parse::<Ipv6Addr>()
            .map_err(|_| "the part in brackets is not an IPv6 address")?;
        let port = match tail {
            "" => None,
            _ => Some(tail.strip_prefix(':').ok_or("expected `:port` after `]`")?),
        };
        (inner, port)
    } else {
        match rest.split_once(':') {
            Some((_, port)) if port.contains(':') => {
                return Err("write IPv6 addresses in brackets, e.g. `[::1]:443`".into());
            }
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    let port_explicit = port.is_some();
    let port = match (port, default_port) {
        (Some(p), _) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err("the port must be a number from 1 to 65535".into()),
        },
        (None, Some(default)) => default,
        (None, None) => {
            return Err(format!(
                "missing port: write `host:port`, or use a scheme with a default port ({SCHEMES})"
            ));
        }
    };
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| "the host is not a valid DNS name or IP address")?;
    Ok(Target {
        host: host.to_string(),
        name,
        port,
        port_explicit,
        protocol,
        starttls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: u16, protocol: Option<Protocol>, starttls: bool) -> Target {
        Target {
            host: host.into(),
            name: ServerName::try_from(host.to_string()).unwrap(),
            port,
            port_explicit: true,
            protocol,
            starttls,
        }
    }

    #[test]
    fn parses_plain_and_ipv6_targets() {
        assert_eq!(
            parse_target("shop.example:443").unwrap(),
            target("shop.example", 443, None, false)
        );
        assert_eq!(
            parse_target("127.0.0.1:8443").unwrap(),
            target("127.0.0.1", 8443, None, false)
        );
        assert_eq!(
            parse_target("[::1]:443").unwrap(),
            target("::1", 443, None, false)
        );
        assert_eq!(
            parse_target("tls://[::1]:8443/").unwrap(),
            target("::1", 8443, None, false)
        );
    }

    #[test]
    fn schemes_give_protocols_and_default_ports() {
        let cases = [
            ("https://shop.example", 443, None, false),
            ("imaps://mail.example", 993, Some(Protocol::Imap), false),
            ("smtps://mail.example", 465, Some(Protocol::Smtp), false),
            ("pop3s://mail.example", 995, Some(Protocol::Pop3), false),
            (
                "smtp+starttls://mail.example",
                587,
                Some(Protocol::Smtp),
                true,
            ),
            (
                "imap+starttls://mail.example",
                143,
                Some(Protocol::Imap),
                true,
            ),
            (
                "pop3+starttls://mail.example",
                110,
                Some(Protocol::Pop3),
                true,
            ),
            (
                "SMTP+STARTTLS://mail.example:25",
                25,
                Some(Protocol::Smtp),
                true,
            ),
        ];
        for (text, port, protocol, starttls) in cases {
            let t = parse_target(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                (t.port, t.protocol, t.starttls),
                (port, protocol, starttls),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_bad_targets_with_a_reason() {
        let cases = [
            ("shop.example", "missing port"),
            ("tls://shop.example", "missing port"),
            ("ftp://shop.example:21", "unknown scheme"),
            ("shop.example:0", "port must be a number"),
            ("shop.example:99999", "port must be a number"),
            ("shop.example:https", "port must be a number"),
            ("::1:443", "brackets"),
            ("[::1", "missing `]`"),
            ("[shop]:443", "not an IPv6 address"),
            (":443", "missing host"),
            ("https://shop.example/path", "without path"),
            ("bad host:443", "not a valid DNS name"),
        ];
        for (text, wanted) in cases {
            let err = parse_target(text).expect_err(text);
            assert!(err.contains(wanted), "{text}: {err}");
        }
    }
}
