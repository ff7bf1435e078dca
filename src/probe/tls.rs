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
//!
//! Target parsing is in `target`, the judgement of a presented chain in `cert`.

mod cert;
mod starttls;
mod target;

use self::cert::InspectAnyChain;
use self::starttls::starttls;
use self::target::{Target, parse_target};
use super::{Probe, Shared};
use crate::net::ConnectError;
use crate::outcome::{FailureKind, Outcome, RunContext};
use crate::value::{Dur, Text};
use futures::future::BoxFuture;
use rustls::RootCertStore;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

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
    /// The check's host overrides: a target's host connects there, and is still the name sent
    /// and verified.
    resolve: crate::net::Resolve,
}

impl TlsProbe {
    /// Builds the probe; reads `ca_file` (the system roots are shared by all probes).
    pub fn build(
        spec: &TlsSpec,
        resolve: &crate::net::Resolve,
        _shared: &Shared,
    ) -> Result<Self, String> {
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
            resolve: resolve.clone(),
        })
    }

    async fn attempt(&self, ctx: &RunContext) -> Outcome {
        let mut outcome = Outcome::pass();
        // Sequential on purpose: a check's targets are usually one shop's few mail and web hosts.
        let several = self.targets.len() > 1;
        for (i, (label, target)) in self.targets.iter().enumerate() {
            // With several targets each phase says whose it is: `connect@mail.example.ru:587`.
            let suffix = match (several, label.is_interpolated()) {
                (false, _) => String::new(),
                (true, false) => format!("@{label}"),
                (true, true) => format!("@{}", i + 1),
            };
            let presented = self.handshake(ctx, label, target, &suffix).await;
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
        phase_suffix: &str,
    ) -> Step<Vec<CertificateDer<'static>>> {
        ctx.begin(format!("connect{phase_suffix}"));
        let mut tcp = self
            .resolve
            .connect(&target.host, target.port, target.port_explicit)
            .await
            .map_err(|e| match e {
                ConnectError::Dns(e) => (
                    FailureKind::Dns,
                    format!("cannot resolve the host of {label}: {e}"),
                ),
                ConnectError::Connect(e) => (
                    FailureKind::Connect,
                    format!("cannot connect to {label}: {e}"),
                ),
            })?;
        if let (true, Some(protocol)) = (target.starttls, target.protocol) {
            ctx.begin(format!("starttls{phase_suffix}"));
            tcp = starttls(tcp, protocol, label).await?;
        }
        ctx.begin(format!("tls{phase_suffix}"));
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
}

impl Probe for TlsProbe {
    fn hosts(&self) -> Vec<String> {
        self.targets
            .iter()
            .map(|(_, t)| crate::net::endpoint(&t.host, Some(t.port)))
            .collect()
    }

    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, Outcome> {
        Box::pin(self.attempt(ctx))
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
}
