//! `tls` checks: a handshake with each target and a judgement of the certificate chain it presents.
//!
//! The handshake accepts whatever certificate the server presents (handshake signatures are still
//! verified), so that an expired, self-signed or wrongly named certificate is *inspected* and
//! reported with its dates instead of ending as a bare handshake error. The chain is then judged on
//! its own with the webpki checks rustls itself uses: does it lead to a trusted root at a moment
//! inside its validity (expiry is reported separately, with its date), and is the leaf valid for
//! the name.
//!
//! STARTTLS targets speak just enough SMTP, IMAP or POP3 to upgrade (module `starttls`, with bounded
//! reads); the runner's timeout bounds the time of everything here.

mod starttls;

use self::starttls::{Protocol, starttls};
use super::{Probe, Shared};
use crate::outcome::{CertReport, FailureKind, Observation, Outcome, RunContext};
use crate::value::{Dur, Text};
use futures::future::BoxFuture;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;
use std::net::Ipv6Addr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long the polite goodbye after the handshake may take.
const GOODBYE: Duration = Duration::from_millis(500);

/// Config of a `tls` check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// `host:port`, `[::1]:443` or `scheme://host[:port]` (`https`, `tls`, `imaps`, `smtps`,
    /// `pop3s`, `smtp+starttls`, `imap+starttls`, `pop3+starttls`); `${ENV}` allowed.
    pub targets: Vec<Text>,
    /// Fail when any presented certificate expires within this (14d by default).
    #[serde(default = "default_warn_before")]
    pub warn_before: Dur,
    /// PEM file with the CA(s) to trust instead of the system roots; `${ENV}` allowed.
    pub ca_file: Option<Text>,
    /// Name sent as SNI and verified against the certificate; the target's host by default.
    pub server_name: Option<Text>,
}

fn default_warn_before() -> Dur {
    Dur::secs(14 * 86_400)
}

/// A parsed target.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// Host name or IP address, without IPv6 brackets.
    host: String,
    /// The host as a name to send and verify (an IP address stays an IP address).
    name: ServerName<'static>,
    port: u16,
    /// What the server speaks, when known (`https` and `tls` speak nothing we know of).
    protocol: Option<Protocol>,
    /// Upgrade a plain connection with STARTTLS before the handshake.
    starttls: bool,
}

const SCHEMES: &str = "tls://, https://, imaps://, smtps://, pop3s://, smtp+starttls://, \
                       imap+starttls:// or pop3+starttls://";

/// Parses a target. Messages never repeat the value: it may have come from the environment.
fn parse_target(text: &str) -> Result<Target, String> {
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (Some(scheme.to_ascii_lowercase()), rest),
        None => (None, text),
    };
    let (protocol, starttls, default_port) = match scheme.as_deref() {
        None | Some("tls") => (None, false, None),
        Some("https") => (None, false, Some(443)),
        Some("imaps") => (Some(Protocol::Imap), false, Some(993)),
        Some("smtps") => (Some(Protocol::Smtp), false, Some(465)),
        Some("pop3s") => (Some(Protocol::Pop3), false, Some(995)),
        Some("smtp+starttls") => (Some(Protocol::Smtp), true, Some(587)),
        Some("imap+starttls") => (Some(Protocol::Imap), true, Some(143)),
        Some("pop3+starttls") => (Some(Protocol::Pop3), true, Some(110)),
        Some(_) => return Err(format!("unknown scheme; use host:port or {SCHEMES}")),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#', '@']) {
        return Err("a target is `host:port` or `scheme://host:port`, without path or user".into());
    }
    let (host, port) = if let Some(after) = rest.strip_prefix('[') {
        let (inner, tail) = after
            .split_once(']')
            .ok_or("missing `]` after the IPv6 address")?;
        inner
            .parse::<Ipv6Addr>()
            .map_err(|_| "the part in brackets is not an IPv6 address")?;
        let port = match tail {
            "" => None,
            _ => Some(tail.strip_prefix(':').ok_or("expected `:port` after `]`")?),
        };
        (inner, port)
    } else {
        match rest.split_once(':') {
            Some((_, port)) if port.contains(':') => {
                return Err("write IPv6 addresses in brackets, e.g. `[::1]:443`".into());
            }
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err("missing host".into());
    }
    let port = match (port, default_port) {
        (Some(p), _) => match p.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err("the port must be a number from 1 to 65535".into()),
        },
        (None, Some(default)) => default,
        (None, None) => {
            return Err(format!(
                "missing port: write `host:port`, or use a scheme with a default port ({SCHEMES})"
            ));
        }
    };
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| "the host is not a valid DNS name or IP address")?;
    Ok(Target {
        host: host.to_string(),
        name,
        port,
        protocol,
        starttls,
    })
}

fn parse_targets(spec: &TlsSpec) -> Result<Vec<(Text, Target)>, String> {
    if spec.targets.is_empty() {
        return Err("`targets` is empty: list at least one, e.g. `shop.example:443`".into());
    }
    let mut targets = Vec::new();
    let mut problems = Vec::new();
    for text in &spec.targets {
        match parse_target(text.expose()) {
            Ok(t) => targets.push((text.clone(), t)),
            Err(e) => problems.push(format!("invalid target `{text}`: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(targets)
    } else {
        Err(problems.join("; "))
    }
}

fn parse_server_name(text: &Text) -> Result<ServerName<'static>, String> {
    ServerName::try_from(text.expose().to_string())
        .map_err(|_| format!("server_name `{text}` is not a valid DNS name or IP address"))
}

/// Checks the targets' syntax and `server_name`, at load time.
pub fn validate(spec: &TlsSpec) -> Result<(), String> {
    parse_targets(spec)?;
    if let Some(name) = &spec.server_name {
        parse_server_name(name)?;
    }
    Ok(())
}

/// Accepts any certificate chain so that it can be inspected after the handshake, but still checks
/// the handshake signatures: the peer must hold the key of the certificate it presents.
#[derive(Debug)]
struct InspectAnyChain {
    algorithms: WebPkiSupportedAlgorithms,
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

/// Why one target could not be inspected.
type Step<T> = Result<T, (FailureKind, String)>;

/// A ready-to-run `tls` check.
pub struct TlsProbe {
    targets: Vec<(Text, Target)>,
    server_name: Option<(Text, ServerName<'static>)>,
    warn_before: Dur,
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
    connector: tokio_rustls::TlsConnector,
}

impl TlsProbe {
    /// Builds the probe; reads `ca_file` (the system roots are shared by all probes).
    pub fn build(spec: &TlsSpec, _shared: &Shared) -> Result<Self, String> {
        let targets = parse_targets(spec)?;
        let server_name = match &spec.server_name {
            Some(text) => Some((text.clone(), parse_server_name(text)?)),
            None => None,
        };
        let roots = crate::tlsconf::roots(spec.ca_file.as_ref().map(|t| Path::new(t.expose())))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let algorithms = provider.signature_verification_algorithms;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(InspectAnyChain { algorithms }))
            .with_no_client_auth();
        Ok(TlsProbe {
            targets,
            server_name,
            warn_before: spec.warn_before,
            roots,
            algorithms,
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    async fn attempt(&self, ctx: &RunContext) -> Outcome {
        let mut outcome = Outcome::pass();
        // Sequential on purpose: a check's targets are usually one shop's few mail and web hosts.
        for (label, target) in &self.targets {
            let presented = self.handshake(ctx, label, target).await;
            ctx.end();
            match presented {
                Ok(chain) => self.judge(label, target, &chain, &mut outcome),
                Err((kind, message)) => {
                    // The message names the target already.
                    outcome.details.push(message.clone());
                    outcome.fail_with(kind, message);
                }
            }
        }
        outcome
    }

    /// The SNI / verified name, and how to print it: `None` when it came from an interpolated
    /// target, whose value must not be shown.
    fn name_for(&self, label: &Text, target: &Target) -> (ServerName<'static>, Option<String>) {
        if let Some((text, name)) = &self.server_name {
            return (name.clone(), Some(text.to_string()));
        }
        let printable = (!label.is_interpolated()).then(|| target.host.clone());
        (target.name.clone(), printable)
    }

    /// Connects (and upgrades with STARTTLS), completes the handshake and returns the presented
    /// chain, leaf first.
    async fn handshake(
        &self,
        ctx: &RunContext,
        label: &Text,
        target: &Target,
    ) -> Step<Vec<CertificateDer<'static>>> {
        ctx.begin("connect");
        let addrs: Vec<_> = tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|e| {
                (
                    FailureKind::Dns,
                    format!("cannot resolve the host of {label}: {e}"),
                )
            })?
            .collect();
        let mut tcp = TcpStream::connect(&addrs[..]).await.map_err(|e| {
            (
                FailureKind::Connect,
                format!("cannot connect to {label}: {e}"),
            )
        })?;
        // Handshake messages are small writes; Nagle would add delayed-ACK waits to the timing.
        let _ = tcp.set_nodelay(true);
        if let (true, Some(protocol)) = (target.starttls, target.protocol) {
            ctx.begin("starttls");
            tcp = starttls(tcp, protocol, label).await?;
        }
        ctx.begin("tls");
        let (name, _) = self.name_for(label, target);
        let mut tls = self.connector.connect(name, tcp).await.map_err(|e| {
            (
                FailureKind::Tls,
                format!("TLS handshake with {label} failed: {e}"),
            )
        })?;
        let chain = tls
            .get_ref()
            .1
            .peer_certificates()
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        // Best effort and short: the server's answer does not matter.
        let _ = tokio::time::timeout(GOODBYE, async {
            if let Some(protocol) = target.protocol {
                let _ = tls.write_all(protocol.goodbye().as_bytes()).await;
            }
            let _ = tls.shutdown().await;
        })
        .await;
        Ok(chain)
    }

    /// Judges the presented chain, records a [`CertReport`] and a detail line, and fails
    /// `outcome` (keeping an earlier failure) when something is wrong.
    fn judge(
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

impl Probe for TlsProbe {
    fn hosts(&self) -> Vec<String> {
        self.targets.iter().map(|(_, t)| t.host.clone()).collect()
    }

    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, Outcome> {
        Box::pin(self.attempt(ctx))
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

/// A server's words, safe for one line of output: control characters replaced, 120 chars at most.
fn printable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(120)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().count() > 120 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: u16, protocol: Option<Protocol>, starttls: bool) -> Target {
        Target {
            host: host.into(),
            name: ServerName::try_from(host.to_string()).unwrap(),
            port,
            protocol,
            starttls,
        }
    }

    #[test]
    fn parses_plain_and_ipv6_targets() {
        assert_eq!(
            parse_target("shop.example:443").unwrap(),
            target("shop.example", 443, None, false)
        );
        assert_eq!(
            parse_target("127.0.0.1:8443").unwrap(),
            target("127.0.0.1", 8443, None, false)
        );
        assert_eq!(
            parse_target("[::1]:443").unwrap(),
            target("::1", 443, None, false)
        );
        assert_eq!(
            parse_target("tls://[::1]:8443/").unwrap(),
            target("::1", 8443, None, false)
        );
    }

    #[test]
    fn schemes_give_protocols_and_default_ports() {
        let cases = [
            ("https://shop.example", 443, None, false),
            ("imaps://mail.example", 993, Some(Protocol::Imap), false),
            ("smtps://mail.example", 465, Some(Protocol::Smtp), false),
            ("pop3s://mail.example", 995, Some(Protocol::Pop3), false),
            (
                "smtp+starttls://mail.example",
                587,
                Some(Protocol::Smtp),
                true,
            ),
            (
                "imap+starttls://mail.example",
                143,
                Some(Protocol::Imap),
                true,
            ),
            (
                "pop3+starttls://mail.example",
                110,
                Some(Protocol::Pop3),
                true,
            ),
            (
                "SMTP+STARTTLS://mail.example:25",
                25,
                Some(Protocol::Smtp),
                true,
            ),
        ];
        for (text, port, protocol, starttls) in cases {
            let t = parse_target(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(
                (t.port, t.protocol, t.starttls),
                (port, protocol, starttls),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_bad_targets_with_a_reason() {
        let cases = [
            ("shop.example", "missing port"),
            ("tls://shop.example", "missing port"),
            ("ftp://shop.example:21", "unknown scheme"),
            ("shop.example:0", "port must be a number"),
            ("shop.example:99999", "port must be a number"),
            ("shop.example:https", "port must be a number"),
            ("::1:443", "brackets"),
            ("[::1", "missing `]`"),
            ("[shop]:443", "not an IPv6 address"),
            (":443", "missing host"),
            ("https://shop.example/path", "without path"),
            ("bad host:443", "not a valid DNS name"),
        ];
        for (text, wanted) in cases {
            let err = parse_target(text).expect_err(text);
            assert!(err.contains(wanted), "{text}: {err}");
        }
    }

    #[test]
    fn validate_names_every_bad_target_by_its_template() {
        let spec = TlsSpec {
            targets: vec![Text::literal("a.example"), Text::literal("ftp://b:1")],
            warn_before: default_warn_before(),
            ca_file: None,
            server_name: None,
        };
        let err = validate(&spec).unwrap_err();
        assert!(
            err.contains("`a.example`") && err.contains("`ftp://b:1`"),
            "{err}"
        );
        let empty = TlsSpec {
            targets: Vec::new(),
            ..spec
        };
        assert!(validate(&empty).unwrap_err().contains("empty"));
    }

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(3 * 86_400 - 5), "3 days");
        assert_eq!(span(30 * 3_600), "30 hours");
        assert_eq!(span(125), "2 minutes");
        assert_eq!(date(0), "1970-01-01");
    }
}
