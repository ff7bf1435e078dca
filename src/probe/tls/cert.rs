//! Judging the certificate chain a `tls` target presented, apart from getting it.
//!
//! The handshake accepts any chain ([`InspectAnyChain`]) so that a bad certificate is inspected
//! instead of ending as a bare handshake error; here the chain is parsed (x509-parser for dates and
//! names) and verified with the webpki checks rustls itself uses, at a moment inside its validity
//! so that "is it trusted?" and "is it expired?" are reported separately, each with its date.

use super::target::Target;
use super::{TlsProbe, printable};
use crate::outcome::{CertReport, FailureKind, Observation, Outcome};
use crate::value::Text;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::time::{Duration, SystemTime};

/// Accepts any certificate chain so that it can be inspected after the handshake, but still checks
/// the handshake signatures: the peer must hold the key of the certificate it presents.
#[derive(Debug)]
pub(super) struct InspectAnyChain {
    pub(super) algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for InspectAnyChain {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The chain is judged after the handshake (`TlsProbe::judge`), where a bad chain becomes
        // a reported fact instead of an aborted connection.
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl TlsProbe {
    /// Judges the presented chain, records a [`CertReport`] and a detail line, and fails
    /// `outcome` (keeping an earlier failure) when something is wrong.
    pub(super) fn judge(
        &self,
        label: &Text,
        target: &Target,
        chain: &[CertificateDer<'static>],
        outcome: &mut Outcome,
    ) {
        let now = unix_now();
        let facts = match inspect(chain) {
            Ok(facts) => facts,
            Err(e) => {
                let message = format!("certificate for {label} cannot be inspected: {e}");
                outcome.details.push(message.clone());
                outcome.fail_with(FailureKind::Tls, message);
                return;
            }
        };
        let (name, printable_name) = self.name_for(label, target);
        let leaf = &facts.infos[0];
        let (earliest_index, earliest) = facts.earliest();
        let (leaf_der, intermediates) = (&chain[0], &chain[1..]);
        let parsed = ParsedCertificate::try_from(leaf_der);
        let chain_check = match &parsed {
            Ok(parsed) => rustls::client::verify_server_cert_signed_by_trust_anchor(
                parsed,
                &self.roots,
                intermediates,
                facts.verification_time(now),
                self.algorithms.all,
            )
            .map_err(|e| describe_chain_error(&e, leaf.self_signed)),
            Err(e) => Err(e.to_string()),
        };
        let name_matches = parsed
            .as_ref()
            .is_ok_and(|p| rustls::client::verify_server_name(p, &name).is_ok());

        outcome.observations.push(Observation::Cert(CertReport {
            // A target is a public host and port, so the label carries the value a dashboard
            // reader recognises rather than the `${…}` template it may have been written with.
            target: label.expose().to_string(),
            leaf_not_after: leaf.not_after,
            chain_not_after: earliest.not_after,
            chain_verified: chain_check.is_ok(),
            name_matches,
        }));
        outcome.details.push(format!(
            "{label}: leaf {} {}, {}, {}",
            leaf.subject,
            expiry_phrase(leaf.not_after, now),
            match &chain_check {
                Ok(()) => "chain verified".to_string(),
                Err(why) => format!("chain not verified: {why}"),
            },
            match (name_matches, &printable_name) {
                (true, _) => "name matches".to_string(),
                (false, Some(n)) => format!("name {n} does not match"),
                (false, None) => "host name does not match".to_string(),
            },
        ));
        if earliest_index > 0 {
            outcome.details.push(format!(
                "{label}: chain certificate {} {}",
                earliest.subject,
                expiry_phrase(earliest.not_after, now)
            ));
        }

        // Which certificate a date belongs to, for the messages below.
        let whose = if earliest_index == 0 {
            format!("certificate for {label}")
        } else {
            format!("certificate {} in the chain of {label}", earliest.subject)
        };
        if earliest.not_after < now {
            outcome.fail_with(
                FailureKind::CertExpiry,
                format!("{whose} expired on {}", date(earliest.not_after)),
            );
        } else if leaf.not_before > now {
            outcome.fail_with(
                FailureKind::Tls,
                format!(
                    "certificate for {label} is not valid before {}",
                    date(leaf.not_before)
                ),
            );
        } else if let Err(why) = &chain_check {
            outcome.fail_with(
                FailureKind::Tls,
                format!("certificate chain for {label} does not verify: {why}"),
            );
        } else if !name_matches {
            outcome.fail_with(
                FailureKind::Tls,
                match &printable_name {
                    Some(n) => format!("certificate for {label} is not valid for name {n}"),
                    None => format!("certificate for {label} is not valid for its host name"),
                },
            );
        } else {
            let left = earliest.not_after - now;
            let warn = i64::try_from(self.warn_before.get().as_secs()).unwrap_or(i64::MAX);
            if left < warn {
                outcome.fail_with(
                    FailureKind::CertExpiry,
                    format!(
                        "{whose} expires in {} (warn_before {})",
                        span(left),
                        self.warn_before
                    ),
                );
            }
        }
    }
}

/// What x509-parser tells about one presented certificate.
struct CertInfo {
    /// `CN=…`, or the whole subject when it has no common name.
    subject: String,
    not_before: i64,
    not_after: i64,
    self_signed: bool,
}

/// The presented chain, parsed; never empty.
struct ChainFacts {
    infos: Vec<CertInfo>,
}

fn inspect(chain: &[CertificateDer<'_>]) -> Result<ChainFacts, String> {
    if chain.is_empty() {
        return Err("the server presented no certificate".into());
    }
    let infos = chain
        .iter()
        .enumerate()
        .map(|(i, der)| {
            cert_info(der).map_err(|e| format!("certificate {} of the chain: {e}", i + 1))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ChainFacts { infos })
}

fn cert_info(der: &[u8]) -> Result<CertInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let subject = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(|cn| format!("CN={cn}"))
        .unwrap_or_else(|| cert.subject().to_string());
    Ok(CertInfo {
        subject: printable(&subject),
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        self_signed: cert.subject().as_raw() == cert.issuer().as_raw(),
    })
}

impl ChainFacts {
    /// The certificate that expires first, and its position (0: the leaf).
    fn earliest(&self) -> (usize, &CertInfo) {
        let mut best = (0, &self.infos[0]);
        for (i, info) in self.infos.iter().enumerate().skip(1) {
            if info.not_after < best.1.not_after {
                best = (i, info);
            }
        }
        best
    }

    /// A moment at which every presented certificate is valid, as close to `now` as possible, so
    /// that verifying the chain answers "is it trusted?" and not "is it expired?".
    fn verification_time(&self, now: i64) -> UnixTime {
        let leaf = &self.infos[0];
        let latest_start = self.infos.iter().map(|c| c.not_before).max();
        let earliest_end = self.infos.iter().map(|c| c.not_after).min();
        let (lo, hi) = match (latest_start, earliest_end) {
            (Some(lo), Some(hi)) if lo <= hi => (lo, hi),
            _ => (leaf.not_before, leaf.not_after.max(leaf.not_before)),
        };
        let at = now.clamp(lo, hi);
        UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(at).unwrap_or(0)))
    }
}

fn describe_chain_error(e: &rustls::Error, self_signed: bool) -> String {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) if self_signed => {
            "unknown issuer (self-signed?)".into()
        }
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "unknown issuer (not signed by a trusted CA, or an intermediate is missing)".into()
        }
        other => other.to_string(),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// `2026-12-01` (UTC).
fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| format!("@{unix}"))
}

/// `3 days`, `20 hours`, `15 minutes` (days rounded to the nearest one).
fn span(secs: i64) -> String {
    let secs = secs.max(0);
    if secs >= 2 * 86_400 {
        format!("{} days", (secs + 43_200) / 86_400)
    } else if secs >= 3_600 {
        format!("{} hours", secs / 3_600)
    } else {
        format!("{} minutes", secs / 60)
    }
}

fn expiry_phrase(not_after: i64, now: i64) -> String {
    if not_after < now {
        format!(
            "expired {} ({} ago)",
            date(not_after),
            span(now - not_after)
        )
    } else {
        format!("expires {} (in {})", date(not_after), span(not_after - now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(3 * 86_400 - 5), "3 days");
        assert_eq!(span(30 * 3_600), "30 hours");
        assert_eq!(span(125), "2 minutes");
        assert_eq!(date(0), "1970-01-01");
    }
}
