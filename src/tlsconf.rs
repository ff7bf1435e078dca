//! Trust stores and rustls setup shared by every probe that speaks TLS.
//!
//! The crypto provider is installed explicitly (ring) so that no dependency's choice decides it,
//! and the system root store is read once per process: loading it takes milliseconds, far more
//! than a probe run is allowed to cost.

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Installs ring as the process-wide rustls crypto provider. Safe to call more than once.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The operating system's trusted roots, loaded once.
pub fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut store = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(%error, "some system root certificates could not be loaded");
            }
            let (added, ignored) = store.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "loaded system root certificates");
            Arc::new(store)
        })
        .clone()
}

/// Roots from a PEM `ca_file` (only those: a private CA should not be mixed with public ones).
pub fn roots_from_file(path: &Path) -> Result<Arc<RootCertStore>, String> {
    let mut store = RootCertStore::empty();
    for cert in certificates_from_file(path)? {
        store.add(cert).map_err(|e| {
            format!(
                "ca_file `{}` holds an unusable certificate: {e}",
                path.display()
            )
        })?;
    }
    Ok(Arc::new(store))
}

/// The certificates of a PEM `ca_file`, at least one.
pub fn certificates_from_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read ca_file `{}`: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ca_file `{}` is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "ca_file `{}` holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// Roots for a probe: its `ca_file` when given, else the system's.
pub fn roots(ca_file: Option<&Path>) -> Result<Arc<RootCertStore>, String> {
    match ca_file {
        Some(path) => roots_from_file(path),
        None => Ok(system_roots()),
    }
}

/// A verifying client config over `roots`.
pub fn client_config(roots: Arc<RootCertStore>) -> rustls::ClientConfig {
    install_crypto_provider();
    rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A server config for the built-in web server from PEM files: the certificate chain (leaf
/// first) and its private key, offering HTTP/1.1.
pub fn server_config(cert_file: &Path, key_file: &Path) -> Result<rustls::ServerConfig, String> {
    use rustls::pki_types::PrivateKeyDer;
    install_crypto_provider();
    let read = |path: &Path, what: &str| {
        std::fs::read(path).map_err(|e| format!("cannot read {what} `{}`: {e}", path.display()))
    };
    let cert_pem = read(cert_file, "cert_file")?;
    let key_pem = read(key_file, "key_file")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cert_file `{}` is not valid PEM: {e}", cert_file.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "cert_file `{}` holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        format!(
            "key_file `{}` holds no usable private key: {e}",
            key_file.display()
        )
    })?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key do not fit together: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
