//! The `smtp:` URL of a `mail` check and the TLS parameters that go with it.

use super::account::AccountKey;
use crate::value::Text;
use lettre::transport::smtp::client::{Certificate, CertificateStore, TlsParameters};
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{LazyLock, Mutex};

/// How the connection is protected, from the URL scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// `smtp://`: no TLS at all (not even opportunistic STARTTLS), like a plain MX check.
    Plain,
    /// `smtp+starttls://`: STARTTLS is required; a server without it fails the run.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Implicit,
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Security::Plain => "no TLS",
            Security::StartTls => "STARTTLS",
            Security::Implicit => "implicit TLS",
        })
    }
}

/// The server, from the `smtp:` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Host name or address (IPv6 without brackets), lower case.
    pub host: String,
    /// Port (25, 587 or 465 by default, after the scheme).
    pub port: u16,
    /// TLS mode.
    pub security: Security,
}

impl Target {
    /// Parses `smtp://`, `smtp+starttls://` or `smtps://` `host[:port]`.
    pub fn parse(raw: &Text) -> Result<Self, String> {
        // Quoted in errors without any login it may hold: a literal URL is not a secret, its
        // userinfo may be.
        let shown = without_userinfo(raw.template());
        let url = url::Url::parse(raw.expose())
            .map_err(|e| format!("invalid smtp URL `{shown}`: {e}"))?;
        let (security, default_port) = match url.scheme() {
            "smtp" => (Security::Plain, 25),
            "smtp+starttls" => (Security::StartTls, 587),
            "smtps" => (Security::Implicit, 465),
            other => {
                return Err(format!(
                    "smtp URL scheme `{other}` must be smtp:// (no TLS), smtp+starttls:// \
                     (STARTTLS required) or smtps:// (implicit TLS)"
                ));
            }
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "smtp URL `{shown}` holds a login; put it in `user` and `password` instead"
            ));
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("smtp URL `{shown}` has no host"))?;
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "smtp URL `{shown}` must be only scheme://host[:port]"
            ));
        }
        Ok(Target {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_ascii_lowercase(),
            port: url.port().unwrap_or(default_port),
            security,
        })
    }

    /// The host as written in a URL (IPv6 in brackets).
    pub fn url_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// `host:port`, IPv6 in brackets, for messages.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.url_host(), self.port)
    }

    /// Whether the server is this machine (where unencrypted AUTH exposes nothing).
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost" || self.host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// The pacing account of `user` on this server.
    pub fn account(&self, user: Option<&str>) -> AccountKey {
        AccountKey {
            user: user.map(str::to_string),
            server: self.addr(),
        }
    }
}

/// `url` with any `user:password@` replaced by `<redacted>@`.
fn without_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://<redacted>{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// TLS parameters for `host`, trusting only `ca_file` when given, else the system roots.
///
/// Built once per (host, CA) for the whole process: without `ca_file`, lettre reads the system
/// root store on every build, which costs milliseconds per check at each config load.
pub fn tls_parameters(host: &str, ca_file: Option<&Path>) -> Result<TlsParameters, String> {
    type Key = (String, Option<Vec<u8>>);
    static CACHE: LazyLock<Mutex<HashMap<Key, TlsParameters>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));
    let pem = match ca_file {
        Some(path) => {
            // The shared loader words the errors (unreadable, not PEM, no certificate).
            crate::tlsconf::roots_from_file(path)?;
            Some(
                std::fs::read(path)
                    .map_err(|e| format!("cannot read ca_file `{}`: {e}", path.display()))?,
            )
        }
        None => None,
    };
    let key = (host.to_string(), pem);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(params) = cache.get(&key) {
        return Ok(params.clone());
    }
    crate::tlsconf::install_crypto_provider();
    let mut builder = TlsParameters::builder(host.to_string());
    if let Some(pem) = &key.1 {
        let cert = Certificate::from_pem(pem).map_err(|e| {
            let shown = ca_file.map(|p| p.display().to_string()).unwrap_or_default();
            format!("ca_file `{shown}` is not usable: {e}")
        })?;
        // A private CA replaces the public roots instead of joining them, as for every probe.
        builder = builder
            .certificate_store(CertificateStore::None)
            .add_root_certificate(cert);
    }
    let params = builder
        .build_rustls()
        .map_err(|e| format!("cannot set up TLS for {host}: {e}"))?;
    cache.insert(key, params.clone());
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Result<Target, String> {
        Target::parse(&Text::literal(url))
    }

    #[test]
    fn urls_choose_tls_mode_and_default_port() {
        let t = target("smtp://MX.Shop.example").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.security),
            ("mx.shop.example", 25, Security::Plain)
        );
        let t = target("smtp+starttls://mail.example.ru").unwrap();
        assert_eq!((t.port, t.security), (587, Security::StartTls));
        let t = target("smtps://mail.example.ru").unwrap();
        assert_eq!((t.port, t.security), (465, Security::Implicit));
        let t = target("smtp://[::1]:2525").unwrap();
        assert_eq!((t.host.as_str(), t.addr()), ("::1", "[::1]:2525".into()));
        assert!(t.is_loopback());
        assert!(target("smtp://localhost").unwrap().is_loopback());
        assert!(!target("smtp://127.example").unwrap().is_loopback());
    }

    #[test]
    fn bad_urls_say_what_to_write() {
        let cases = [
            ("http://mail.example.ru", "scheme `http` must be smtp://"),
            ("smtp://", "has no host"),
            (
                "smtp://me:pw@mail.example.ru",
                "put it in `user` and `password`",
            ),
            (
                "smtp://mail.example.ru/inbox",
                "must be only scheme://host[:port]",
            ),
            ("mail.example.ru:25", "scheme `mail.example.ru` must be"),
        ];
        for (url, wanted) in cases {
            let err = target(url).unwrap_err();
            assert!(err.contains(wanted), "{url}: {err}");
            assert!(!err.contains("pw"), "{err}");
        }
    }
}
