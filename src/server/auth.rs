//! TLS and basic auth for the built-in web server, following the Prometheus exporter-toolkit
//! web config: `tls_server_config: { cert_file, key_file }` and `basic_auth_users: { user:
//! bcrypt-hash }` under `server:`.
//!
//! bcrypt is slow on purpose (tens of milliseconds), too slow to pay on every scrape: a password
//! that verified once is remembered as its SHA-256 for that user, and later requests compare
//! against that in constant time. Verifications run on the blocking pool, one at a time, so wrong
//! guesses cannot occupy the runtime's workers.

use crate::config::TlsServerConfig;
use base64_decode::decode as decode_base64;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Why the web server's TLS or auth settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    /// A file cannot be read or holds no usable PEM.
    #[error("server.tls_server_config: {0}")]
    Tls(String),
    /// A user's hash is not a bcrypt hash.
    #[error(
        "server.basic_auth_users: the hash of user `{0}` is not a bcrypt hash (`$2y$…`); make one with `htpasswd -nBC 10 USER`"
    )]
    BadHash(String),
    /// `enable_lifecycle` without a credential.
    #[error(
        "server.enable_lifecycle needs server.basic_auth_users: /-/reload must not be open to anyone who can reach the port (SIGHUP reloads without it)"
    )]
    LifecycleWithoutAuth,
}

/// A TLS acceptor for `tls`, with ring as the provider (see [`crate::tlsconf`]).
pub fn tls_acceptor(tls: &TlsServerConfig) -> Result<tokio_rustls::TlsAcceptor, WebConfigError> {
    let config = crate::tlsconf::server_config(&tls.cert_file, &tls.key_file)
        .map_err(WebConfigError::Tls)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The users allowed in, with their bcrypt hashes and the passwords already verified.
pub struct BasicAuth {
    users: BTreeMap<String, String>,
    /// user → SHA-256 of the password that verified against the user's hash.
    verified: Mutex<HashMap<String, [u8; 32]>>,
    /// One bcrypt verification at a time.
    verifying: tokio::sync::Semaphore,
}

impl BasicAuth {
    /// Checks every hash; `None` when no users are configured (no auth).
    pub fn new(users: &BTreeMap<String, String>) -> Result<Option<Self>, WebConfigError> {
        if users.is_empty() {
            return Ok(None);
        }
        for (user, hash) in users {
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(WebConfigError::BadHash(user.clone()));
            }
        }
        Ok(Some(BasicAuth {
            users: users.clone(),
            verified: Mutex::new(HashMap::new()),
            verifying: tokio::sync::Semaphore::new(1),
        }))
    }

    /// Whether the `Authorization` header value names a user and the right password.
    pub async fn allows(&self, authorization: Option<&[u8]>) -> bool {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return false;
        };
        let Some(hash) = self.users.get(&user) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        if let Some(known) = self.lock().get(&user)
            && constant_time_eq(known, &digest)
        {
            return true;
        }
        // Waiting for the permit is fine: it is only held across one verification.
        let Ok(_permit) = self.verifying.acquire().await else {
            return false;
        };
        let hash = hash.clone();
        // bcrypt takes tens of milliseconds of CPU: keep it off the runtime's workers.
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if ok {
            self.lock().insert(user, digest);
        }
        ok
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, [u8; 32]>> {
        // A poisoned lock only means a panic elsewhere mid-update; the map is still usable.
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn parse_basic(value: &[u8]) -> Option<(String, String)> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(decode_base64(encoded.trim())?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Standard base64 (RFC 4648, padded), all that basic auth needs.
mod base64_decode {
    pub fn decode(text: &str) -> Option<Vec<u8>> {
        let text = text.trim_end_matches('=');
        let mut out = Vec::with_capacity(text.len() * 3 / 4);
        let mut buffer = 0u32;
        let mut bits = 0;
        for c in text.bytes() {
            let value = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return None,
            };
            buffer = (buffer << 6) | u32::from(value);
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((buffer >> bits) as u8);
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_the_rfc_vectors() {
        assert_eq!(base64_decode::decode("Zm9vYmFy").unwrap(), b"foobar");
        assert_eq!(base64_decode::decode("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(base64_decode::decode("Zg==").unwrap(), b"f");
        assert!(base64_decode::decode("Zm9v!").is_none());
    }

    #[tokio::test]
    async fn a_verified_password_is_remembered_and_a_wrong_one_refused() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let auth = BasicAuth::new(&BTreeMap::from([("alice".to_string(), hash)]))
            .unwrap()
            .unwrap();
        // "alice:pw", "alice:px", "bob:pw"
        assert!(auth.allows(Some(b"Basic YWxpY2U6cHc=")).await);
        assert!(auth.allows(Some(b"Basic YWxpY2U6cHc=")).await);
        assert!(!auth.allows(Some(b"Basic YWxpY2U6cHg=")).await);
        assert!(!auth.allows(Some(b"Basic Ym9iOnB3")).await);
        assert!(!auth.allows(None).await);
        assert!(BasicAuth::new(&BTreeMap::from([("a".into(), "plain".into())])).is_err());
    }
}
