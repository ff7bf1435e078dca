//! Where a SIP URI's requests go (RFC 3263 4.1, 4.2, without NAPTR): the server and the
//! transport for `sip:shop.example` written without a port.
//!
//! An IP address, or a host with an explicit port, is used as written (A/AAAA for a name), on
//! the URI's transport. A host name without a port is looked up as SRV first: `_sips._tcp` for
//! `sips:` and `;transport=tls`, `_sip._tcp` for `;transport=tcp`, `_sip._udp` for
//! `;transport=udp`, and with no transport parameter `_sip._udp` then `_sip._tcp` (the first
//! with records decides the transport). Targets are tried by priority, then heavier weight
//! first; the first whose A/AAAA resolves is used. With no SRV record at all the host's own
//! A/AAAA on 5060 (5061 for TLS) is used, as before.
//!
//! DNS goes to the system's resolvers (`/etc/resolv.conf`; A/AAAA through the system's lookup,
//! which honours `/etc/hosts`), or to the `nameserver` an account or check names.

use super::SipError;
use super::uri::{SipUri, Transport};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use std::net::{IpAddr, SocketAddr};

/// The server a URI's requests go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Located {
    /// Its address and port.
    pub addr: SocketAddr,
    /// The transport to use (an SRV record may choose TCP for a URI that names none).
    pub transport: Transport,
    /// Found through an SRV record.
    pub by_srv: bool,
}

/// Parses a `nameserver` setting: an IP address with an optional port (53 by default).
pub fn parse_nameserver(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| {
            format!(
                "`nameserver` `{text}` is not an IP address with an optional port \
                 (e.g. 10.0.0.53, 127.0.0.1:5353, [2001:db8::53]:53)"
            )
        })
}

/// Finds the server for `uri`, asking `nameserver` (else the system's resolvers).
pub async fn locate(uri: &SipUri, nameserver: Option<SocketAddr>) -> Result<Located, SipError> {
    let host = uri.host.as_str();
    let plain = |addr: IpAddr| Located {
        addr: SocketAddr::new(addr, uri.effective_port()),
        transport: uri.transport,
        by_srv: false,
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(plain(ip));
    }
    let resolver = resolver(nameserver);
    if uri.port.is_none()
        && let Some(resolver) = &resolver
    {
        for (service, transport) in services(uri) {
            let targets = srv_targets(resolver, &format!("{service}.{host}")).await;
            for (target, port) in targets {
                if let Some(ip) = first_address(resolver, nameserver, &target).await {
                    return Ok(Located {
                        addr: SocketAddr::new(ip, port),
                        transport,
                        by_srv: true,
                    });
                }
            }
        }
    }
    let dns_error = |source| SipError::Dns {
        host: host.to_string(),
        source,
    };
    match (&resolver, nameserver) {
        (Some(resolver), Some(_)) => first_address(resolver, nameserver, host)
            .await
            .map(plain)
            .ok_or_else(|| dns_error(std::io::Error::other("no A or AAAA record"))),
        _ => tokio::net::lookup_host((host, uri.effective_port()))
            .await
            .map_err(dns_error)?
            .next()
            .map(|addr| Located {
                addr,
                transport: uri.transport,
                by_srv: false,
            })
            .ok_or_else(|| dns_error(std::io::Error::other("no address"))),
    }
}

/// The SRV services to ask for `uri`, in order, with the transport each stands for.
fn services(uri: &SipUri) -> Vec<(&'static str, Transport)> {
    match (uri.secure, uri.transport, uri.transport_explicit) {
        (true, _, _) | (false, Transport::Tls, _) => vec![("_sips._tcp", Transport::Tls)],
        (false, Transport::Tcp, _) => vec![("_sip._tcp", Transport::Tcp)],
        (false, Transport::Udp, true) => vec![("_sip._udp", Transport::Udp)],
        (false, Transport::Udp, false) => {
            vec![("_sip._udp", Transport::Udp), ("_sip._tcp", Transport::Tcp)]
        }
    }
}

/// A resolver asking `nameserver`, else the system's; `None` when the system has none
/// configured (SRV is then skipped and the system's own lookup used).
fn resolver(nameserver: Option<SocketAddr>) -> Option<TokioResolver> {
    let (config, mut opts) = match nameserver {
        Some(addr) => {
            let mut server = NameServerConfig::udp_and_tcp(addr.ip());
            for connection in &mut server.connections {
                connection.port = addr.port();
            }
            (
                ResolverConfig::from_name_servers(vec![server]),
                ResolverOpts::default(),
            )
        }
        None => match hickory_resolver::system_conf::read_system_conf() {
            Ok(system) => system,
            Err(e) => {
                tracing::debug!(error = %e, "no system resolver for SIP SRV lookups");
                return None;
            }
        },
    };
    opts.use_hosts_file = ResolveHosts::Never;
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    *builder.options_mut() = opts;
    builder.build().ok()
}

/// The targets of `name`'s SRV records, by priority then heavier weight first; none when the
/// name has no SRV records (or the lookup fails: the A/AAAA fallback then decides).
async fn srv_targets(resolver: &TokioResolver, name: &str) -> Vec<(String, u16)> {
    let Ok(mut fqdn) = Name::from_utf8(name) else {
        return Vec::new();
    };
    fqdn.set_fqdn(true);
    let Ok(lookup) = resolver.lookup(fqdn, RecordType::SRV).await else {
        return Vec::new();
    };
    let mut records: Vec<(u16, u16, String, u16)> = lookup
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some((srv.priority, srv.weight, srv.target.to_utf8(), srv.port)),
            _ => None,
        })
        // RFC 2782: a target of "." means the service is not offered there.
        .filter(|(_, _, target, _)| target != ".")
        .collect();
    records.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    records
        .into_iter()
        .map(|(_, _, target, port)| (target, port))
        .collect()
}

/// The first A (else AAAA) address of `host`: through `resolver` when a nameserver is set,
/// else through the system's lookup.
async fn first_address(
    resolver: &TokioResolver,
    nameserver: Option<SocketAddr>,
    host: &str,
) -> Option<IpAddr> {
    let host = host.trim_end_matches('.');
    if nameserver.is_none() {
        return tokio::net::lookup_host((host, 0))
            .await
            .ok()?
            .next()
            .map(|a| a.ip());
    }
    let mut fqdn = Name::from_utf8(host).ok()?;
    fqdn.set_fqdn(true);
    for rtype in [RecordType::A, RecordType::AAAA] {
        if let Ok(lookup) = resolver.lookup(fqdn.clone(), rtype).await {
            let ip = lookup.answers().iter().find_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            });
            if ip.is_some() {
                return ip;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_follow_the_scheme_and_transport() {
        let services = |text: &str| services(&SipUri::parse(text).unwrap());
        assert_eq!(
            services("sip:shop.test"),
            [("_sip._udp", Transport::Udp), ("_sip._tcp", Transport::Tcp)]
        );
        assert_eq!(
            services("sip:shop.test;transport=udp"),
            [("_sip._udp", Transport::Udp)]
        );
        assert_eq!(
            services("sip:shop.test;transport=tcp"),
            [("_sip._tcp", Transport::Tcp)]
        );
        assert_eq!(services("sips:shop.test"), [("_sips._tcp", Transport::Tls)]);
        assert_eq!(
            services("sip:shop.test;transport=tls"),
            [("_sips._tcp", Transport::Tls)]
        );
    }

    #[test]
    fn nameservers_parse_with_or_without_a_port() {
        assert_eq!(
            parse_nameserver("127.0.0.1:5353"),
            Ok("127.0.0.1:5353".parse().unwrap())
        );
        assert_eq!(
            parse_nameserver("10.0.0.53"),
            Ok("10.0.0.53:53".parse().unwrap())
        );
        assert_eq!(parse_nameserver("[::1]"), Ok("[::1]:53".parse().unwrap()));
        assert!(parse_nameserver("dns.example").is_err());
    }
}
