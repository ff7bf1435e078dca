//! HTTP clients: our TLS setup, a redirect limit, the automated-test User-Agent, and a cache so
//! checks with the same transport options share one client (and one root store).

use super::error_chain;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey {
    pub(crate) max_redirects: usize,
    pub(crate) ca_file: Option<PathBuf>,
    /// The check's host overrides: checks with different ones must not share a client.
    pub(crate) resolve: super::Resolve,
}

/// HTTP clients shared by checks with the same transport options, so that 10,000 checks do not
/// hold 10,000 copies of the root store.
#[derive(Default)]
pub struct ClientCache(Mutex<HashMap<ClientKey, reqwest::Client>>);

impl ClientCache {
    pub(crate) fn get(&self, key: ClientKey) -> Result<reqwest::Client, String> {
        let mut clients = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        let roots = crate::tlsconf::roots(key.ca_file.as_deref())?;
        let client = key
            .resolve
            .apply(client_builder(roots, key.max_redirects))
            // A new connection per run: the probe must see connect and handshake problems.
            .pool_max_idle_per_host(0)
            .build()
            .map_err(|e| format!("cannot build HTTP client: {}", error_chain(&e)))?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// What every supportwatch HTTP client has: our TLS setup over `roots`, at most `max_redirects`
/// redirects, and the User-Agent that says the request is an automated test.
pub(crate) fn client_builder(
    roots: Arc<rustls::RootCertStore>,
    max_redirects: usize,
) -> reqwest::ClientBuilder {
    let policy = match max_redirects {
        0 => reqwest::redirect::Policy::none(),
        n => reqwest::redirect::Policy::limited(n),
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(crate::tlsconf::client_config(roots))
        .redirect(policy)
        .user_agent(crate::USER_AGENT)
}
