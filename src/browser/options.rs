//! What one check asks of its browser beyond the pool's settings: the certificate authorities its
//! `ca_file` names, and its `resolve:` host overrides.
//!
//! Both are per session, never per pool: every run gets a fresh chromium with its own profile and
//! command line, so two checks with different trust or overrides can never share a browser, and
//! one check's private CA is trusted by that check's chromium only.
//!
//! Host overrides become chromium's `--host-resolver-rules`, which rewrites the host (and port)
//! a connection goes to while the URL, the `Host` header and certificate verification keep the
//! real name — what `resolve:` means for the other kinds.

use crate::net::Resolve;
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::sync::Arc;

/// A check's own trust and host overrides for its browser sessions.
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub struct SessionOptions {
    /// Certificates trusted as CAs for server certificates, in this session only (a check's
    /// `ca_file`). Empty: chromium's own trust.
    pub trust: Arc<[CertificateDer<'static>]>,
    /// Where connections to some hosts go instead of what DNS says.
    pub resolve: Resolve,
}

impl SessionOptions {
    /// Options with the CAs of the PEM file `ca_file` (read now, so a bad file is a config error)
    /// and the check's host overrides.
    pub fn new(
        ca_file: Option<&std::path::Path>,
        resolve: &Resolve,
    ) -> Result<SessionOptions, String> {
        let trust = match ca_file {
            Some(path) => crate::tlsconf::certificates_from_file(path)?.into(),
            None => Arc::from(Vec::new()),
        };
        Ok(SessionOptions {
            trust,
            resolve: resolve.clone(),
        })
    }

    /// chromium's `--host-resolver-rules` flag for the overrides, if there are any.
    pub(super) fn resolver_flag(&self) -> Option<String> {
        let rules = resolver_rules(&self.resolve);
        (!rules.is_empty()).then(|| format!("--host-resolver-rules={rules}"))
    }
}

/// The overrides as chromium's host rules, e.g. `MAP shop.example.ru 10.0.0.5`.
///
/// chromium applies the first rule whose pattern matches the host, or `host:port`. An address
/// with a port is used, as by the other kinds, only for URLs that name no port: rules for the
/// scheme's default ports (80, 443) map to it first, and a last rule sends any other port to the
/// address unchanged.
fn resolver_rules(resolve: &Resolve) -> String {
    let mut rules = Vec::new();
    for (host, addr) in resolve.entries() {
        let ip = match addr {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        };
        if addr.port() != 0 {
            for default in [80, 443] {
                rules.push(format!("MAP {host}:{default} {ip}:{}", addr.port()));
            }
        }
        rules.push(format!("MAP {host} {ip}"));
    }
    rules.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn resolve(pairs: &[(&str, &str)]) -> Resolve {
        let map: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Resolve::parse(&map).expect("valid")
    }

    #[test]
    fn no_overrides_no_flag() {
        assert_eq!(SessionOptions::default().resolver_flag(), None);
    }

    #[test]
    fn overrides_become_host_rules() {
        let options = SessionOptions {
            resolve: resolve(&[
                ("shop.example.ru", "10.0.0.5"),
                ("cdn.example.ru", "[2001:db8::5]:8443"),
            ]),
            ..SessionOptions::default()
        };
        assert_eq!(
            options.resolver_flag().as_deref(),
            Some(
                "--host-resolver-rules=MAP cdn.example.ru:80 [2001:db8::5]:8443, \
                 MAP cdn.example.ru:443 [2001:db8::5]:8443, MAP cdn.example.ru [2001:db8::5], \
                 MAP shop.example.ru 10.0.0.5"
            )
        );
    }
}
