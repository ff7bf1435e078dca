//! SIP accounts declared once under `phones:`: where requests go, who sends them and the
//! credentials for challenges. Checks name an account with `phone: NAME`.

use super::uri::{SipUri, Transport};
use crate::value::{Secret, Text};
use serde::Deserialize;

/// One entry under `phones:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneSpec {
    /// The registrar / outbound proxy: `sip:pbx.shop.example[:port][;transport=udp|tcp|tls]`
    /// or `sips:…`; every request of the account goes there.
    pub proxy: Text,
    /// The account's user (From: `sip:USER@DOMAIN`).
    pub user: Text,
    /// The domain in From (and the default realm); the proxy's host when absent.
    pub domain: Option<Text>,
    /// The name answering digest challenges, when it differs from `user`.
    pub auth_user: Option<Text>,
    /// The password for digest challenges; `${ENV}` or `${file:…}`, never printed.
    pub password: Option<Secret>,
    /// The account's own number or URI (what a callback form is filled with).
    pub number: Option<Text>,
    /// PEM file with the CA(s) to trust for TLS instead of the system roots.
    pub ca_file: Option<Text>,
    /// How many `via: call` checks may have a call up through this account at once (default 1;
    /// the others wait for the line within their timeout).
    pub max_calls: Option<u32>,
    /// Keep the account registered (default false): the daemon holds one line for it, answers
    /// keepalives and receives the calls `deliver: { call: NAME }` waits for.
    #[serde(default)]
    pub register: bool,
    /// The DNS server for the proxy's SRV and A/AAAA lookups (`10.0.0.53`, `127.0.0.1:5353`);
    /// the system's resolvers when absent.
    pub nameserver: Option<Text>,
}

impl PhoneSpec {
    /// The parsed proxy URI.
    pub fn proxy_uri(&self) -> Result<SipUri, String> {
        SipUri::parse(self.proxy.expose()).map_err(|e| format!("`proxy` {}: {e}", self.proxy))
    }

    /// The From URI: `sip:user@domain` (`sips:` when the proxy is).
    pub fn from_uri(&self) -> Result<SipUri, String> {
        let proxy = self.proxy_uri()?;
        let domain = match &self.domain {
            Some(d) => d.expose().to_string(),
            None => proxy.host_for_uri(),
        };
        let text = format!(
            "{}:{}@{domain}",
            if proxy.secure { "sips" } else { "sip" },
            self.user.expose()
        );
        let mut uri = SipUri::parse(&text).map_err(|e| format!("`user`/`domain`: {e}"))?;
        // From names the account, not a socket: no port, no transport.
        uri.port = None;
        uri.transport = if proxy.secure {
            Transport::Tls
        } else {
            Transport::Udp
        };
        Ok(uri)
    }

    /// What identifies the line the daemon holds for this account: a reload that changes none
    /// of it keeps the registration up.
    pub fn line_key(&self) -> String {
        format!(
            "{}|{}|{:?}|{:?}|{:?}|{:?}|{:?}",
            self.proxy.expose(),
            self.user.expose(),
            self.domain.as_ref().map(|d| d.expose().to_string()),
            self.auth_user.as_ref().map(|d| d.expose().to_string()),
            self.password.as_ref().map(|d| d.expose().to_string()),
            self.ca_file.as_ref().map(|d| d.expose().to_string()),
            self.nameserver.as_ref().map(|d| d.expose().to_string()),
        )
    }

    /// The parsed `nameserver`, if set.
    pub fn nameserver(&self) -> Result<Option<std::net::SocketAddr>, String> {
        self.nameserver
            .as_ref()
            .map(|n| super::locate::parse_nameserver(n.expose()))
            .transpose()
    }

    /// The name answering challenges.
    pub fn auth_name(&self) -> &str {
        self.auth_user.as_ref().unwrap_or(&self.user).expose()
    }
}

/// Checks an account at load time.
pub fn validate(spec: &PhoneSpec) -> Result<(), String> {
    let proxy = spec.proxy_uri()?;
    spec.from_uri()?;
    spec.nameserver()?;
    if spec.auth_user.is_some() && spec.password.is_none() {
        return Err("`auth_user` is set but `password` is not".into());
    }
    if let Some(n) = spec.max_calls
        && !(1..=100).contains(&n)
    {
        return Err(format!("`max_calls` is {n}; allowed 1 to 100"));
    }
    if proxy.transport != Transport::Tls && spec.ca_file.is_some() {
        return Err("`ca_file` only applies to TLS (`sips:` or `;transport=tls`)".into());
    }
    Ok(())
}
