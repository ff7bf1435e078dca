//! A throwaway certificate authority for the demo shop and for tests.
//!
//! Certificates are made at start with rcgen, so nothing secret is shipped in the repository and
//! any validity window can be produced: valid, about to expire, expired, wrong host name.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// A certificate and its private key, PEM and DER.
pub struct Issued {
    /// Certificate, PEM.
    pub cert_pem: String,
    /// Certificate, DER.
    pub cert_der: rustls::pki_types::CertificateDer<'static>,
    /// Private key, DER (PKCS#8).
    pub key_der: rustls::pki_types::PrivatePkcs8KeyDer<'static>,
}

impl Issued {
    /// A rustls server config presenting this certificate (and `chain` after it).
    pub fn server_config(
        &self,
        chain: &[&Issued],
    ) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
        crate::tlsconf::install_crypto_provider();
        let mut certs = vec![self.cert_der.clone()];
        certs.extend(chain.iter().map(|c| c.cert_der.clone()));
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, self.key_der.clone_key().into())?;
        Ok(Arc::new(config))
    }
}

/// A certificate authority that issues leaf certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate.
    pub ca: Issued,
}

/// Validity of an issued certificate relative to now.
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    /// Start, relative to now (negative: in the past).
    pub from: Duration,
    /// End, relative to now.
    pub until: Duration,
}

impl Validity {
    /// Valid from yesterday for `days` days from now.
    pub fn days(days: i64) -> Self {
        Validity {
            from: Duration::days(-1),
            until: Duration::days(days),
        }
    }
    /// Expired `days` days ago.
    pub fn expired_days_ago(days: i64) -> Self {
        Validity {
            from: Duration::days(-(days + 90)),
            until: Duration::days(-days),
        }
    }
}

fn error(e: rcgen::Error) -> String {
    format!("certificate generation failed: {e}")
}

impl Authority {
    /// A new CA named `name`, valid for ten years.
    pub fn new(name: &str) -> Result<Self, String> {
        let key = KeyPair::generate().map_err(error)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(error)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        let cert = params.self_signed(&key).map_err(error)?;
        let ca = Issued {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_der: rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
        };
        Ok(Authority {
            issuer: Issuer::new(params, key),
            ca,
        })
    }

    /// A leaf for `names` (DNS names or IP addresses) with the given validity.
    pub fn issue(&self, names: &[&str], validity: Validity) -> Result<Issued, String> {
        let params = leaf_params(names, validity)?;
        let key = KeyPair::generate().map_err(error)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(error)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            key_der: rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }
}

/// A self-signed leaf for `names`, trusted by nobody.
pub fn self_signed(names: &[&str], validity: Validity) -> Result<Issued, String> {
    let params = leaf_params(names, validity)?;
    let key = KeyPair::generate().map_err(error)?;
    let cert = params.self_signed(&key).map_err(error)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        cert_der: cert.der().clone(),
        key_der: rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
    })
}

fn leaf_params(names: &[&str], validity: Validity) -> Result<CertificateParams, String> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names.clone()).map_err(error)?;
    if let Some(first) = names.first() {
        params
            .distinguished_name
            .push(DnType::CommonName, first.as_str());
    }
    let now = OffsetDateTime::now_utc();
    params.not_before = now + validity.from;
    params.not_after = now + validity.until;
    Ok(params)
}
