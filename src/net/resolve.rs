//! Host overrides, like curl's `--resolve`: a check's `resolve: { shop.example.ru: 10.0.0.5 }`
//! sends its connections for that host to the given address, while the URL, the `Host` header and
//! TLS name verification keep the real host name. This is how a staging shop before DNS cutover,
//! or one edge of a CDN, is checked under its real name.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// A check's host overrides, validated: host name (lowercase) → address. A port of `0` means
/// "the URL's port"; cheap to clone and usable as part of a client cache key.
#[derive(Clone, Default, Debug, PartialEq, Eq, Hash)]
pub struct Resolve(Arc<[(String, SocketAddr)]>);

impl Resolve {
    /// Validates `resolve:` entries: keys are host names, values IP addresses or `ip:port`.
    /// Returns every problem, each naming its key.
    pub fn parse(entries: &BTreeMap<String, String>) -> Result<Resolve, Vec<String>> {
        let mut problems = Vec::new();
        let mut parsed = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let host = key.trim().to_ascii_lowercase();
            if let Err(m) = check_host(&host) {
                problems.push(format!("resolve: key `{key}`: {m}"));
                continue;
            }
            match parse_addr(value.trim()) {
                Some(addr) => parsed.push((host, addr)),
                None => problems.push(format!(
                    "resolve: `{key}`: `{value}` is not an IP address (e.g. 10.0.0.5, \
                     10.0.0.5:8443, [2001:db8::5]:443)"
                )),
            }
        }
        if problems.is_empty() {
            Ok(Resolve(parsed.into()))
        } else {
            Err(problems)
        }
    }

    /// No overrides.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The overrides, host name (lowercase) and address; a port of `0` stands for the URL's own.
    pub fn entries(&self) -> impl Iterator<Item = (&str, SocketAddr)> {
        self.0.iter().map(|(h, a)| (h.as_str(), *a))
    }

    /// The address connections to `host` go to instead of what DNS says, if overridden; a port
    /// of `0` stands for the URL's own.
    pub fn lookup(&self, host: &str) -> Option<SocketAddr> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.0
            .iter()
            .find(|(h, _)| h.eq_ignore_ascii_case(host))
            .map(|(_, a)| *a)
    }

    /// Where a connection to `host` on `port` goes: the override, else what DNS says. The
    /// override's own port is used only when `port_explicit` is false (the URL names none), as
    /// reqwest does for [`Resolve::apply`], so every kind treats an override alike.
    pub async fn addresses(
        &self,
        host: &str,
        port: u16,
        port_explicit: bool,
    ) -> Result<Vec<SocketAddr>, std::io::Error> {
        if let Some(addr) = self.lookup(host) {
            let port = if port_explicit || addr.port() == 0 {
                port
            } else {
                addr.port()
            };
            return Ok(vec![SocketAddr::new(addr.ip(), port)]);
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let found: Vec<_> = tokio::net::lookup_host((host, port)).await?.collect();
        if found.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "the name has no address",
            ));
        }
        Ok(found)
    }

    /// A TCP connection to `host`'s [`Resolve::addresses`], trying each in turn, with Nagle off
    /// (probes time small request/response exchanges; delayed ACKs would add to them).
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
        port_explicit: bool,
    ) -> Result<tokio::net::TcpStream, ConnectError> {
        let addrs = self
            .addresses(host, port, port_explicit)
            .await
            .map_err(ConnectError::Dns)?;
        let tcp = tokio::net::TcpStream::connect(&addrs[..])
            .await
            .map_err(ConnectError::Connect)?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }

    /// `builder` with these overrides; reqwest keeps the URL's host for `Host` and for TLS name
    /// verification, and uses an override's port only when the URL names none.
    pub fn apply(&self, mut builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        for (host, addr) in self.0.iter() {
            builder = builder.resolve(host, *addr);
        }
        builder
    }
}

/// Why [`Resolve::connect`] failed: the name (a `dns` failure) or the connection (`connect`).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the name does not resolve: {0}")]
    Dns(std::io::Error),
    #[error("{0}")]
    Connect(std::io::Error),
}

/// A host name as an override key: letters, digits, `-` and `.`, no port (the address may carry
/// one instead).
fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("empty host name".into());
    }
    if host.contains(':') {
        return Err(
            "give the host name alone; a port belongs in the address (host: ip:port)".into(),
        );
    }
    if host.len() > 253
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        || host
            .split('.')
            .any(|label| label.is_empty() || label.len() > 63)
    {
        return Err("not a host name".into());
    }
    Ok(())
}

/// `10.0.0.5`, `::1`, `10.0.0.5:8443` or `[::1]:8443`; a bare address gets port 0.
fn parse_addr(value: &str) -> Option<SocketAddr> {
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 0));
    }
    value.parse::<SocketAddr>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_hosts_and_addresses() {
        let r = Resolve::parse(&map(&[
            ("Shop.Example.ru", "10.0.0.5"),
            ("cdn.example.ru", "[2001:db8::5]:8443"),
        ]))
        .expect("valid");
        assert_eq!(r.lookup("shop.example.ru"), "10.0.0.5:0".parse().ok());
        assert_eq!(
            r.lookup("CDN.example.ru"),
            "[2001:db8::5]:8443".parse().ok()
        );
        assert_eq!(r.lookup("other.example.ru"), None);
    }

    #[test]
    fn rejects_bad_keys_and_values() {
        let problems = Resolve::parse(&map(&[
            ("shop.example.ru", "shop-staging"),
            ("bad host", "10.0.0.5"),
            ("shop.example.ru:443", "10.0.0.5"),
        ]))
        .expect_err("invalid");
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("`shop-staging` is not an IP"))
        );
        assert!(problems.iter().any(|p| p.contains("`bad host`")));
        assert!(
            problems
                .iter()
                .any(|p| p.contains("a port belongs in the address"))
        );
    }
}
