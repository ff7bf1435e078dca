//! E-mail notifier (SMTP through lettre).
//!
//! The `smtp` URL means what it means for a `mail` check (`smtp://` plain, `smtp+starttls://`
//! STARTTLS required, `smtps://` implicit TLS; AUTH only over TLS or to a loopback relay), and
//! the message goes through the same step-by-step SMTP dialogue (`probe::mail::smtp`), so a
//! failure quotes the server and names the refused step, and never contains the password.
//!
//! The message is text/plain: Subject is the rendered title, the body the rendered text (a
//! weekly digest is multipart/alternative, its text and its HTML). It
//! carries `Auto-Submitted: auto-generated` (RFC 3834: no autoresponder answers it, no vacation
//! reply bounces back) and `X-Supportwatch-Alert: <fingerprints>` for filtering and threading.
//!
//! A 4xx answer or a connection problem is transient; a 5xx (bad login, refused recipient) is
//! permanent.

use super::{Notification, Notifier, NotifyError};
use crate::outcome::{FailureKind, RunContext};
use crate::probe::mail::{parse_mailbox, smtp, target};
use crate::value::{Secret, Text};
use futures::future::BoxFuture;
use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::transport::smtp::client::TlsParameters;
use lettre::transport::smtp::extension::ClientId;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The header that lists the alerts' fingerprints.
pub const ALERT_HEADER: &str = "X-Supportwatch-Alert";

/// `kind: email`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSpec {
    /// `smtp://host[:25]`, `smtp+starttls://host[:587]` or `smtps://host[:465]`.
    pub smtp: Text,
    /// SMTP AUTH login; needs TLS.
    pub user: Option<Text>,
    /// SMTP AUTH password; never printed.
    pub password: Option<Secret>,
    /// PEM file with the CA(s) to trust instead of the system roots.
    pub ca_file: Option<Text>,
    /// Sender address.
    pub from: Text,
    /// Recipients.
    pub to: Vec<Text>,
}

/// What [`validate`] works out and the notifier keeps.
struct Compiled {
    target: target::Target,
    credentials: Option<(String, Secret)>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

/// Checks the spec at load time.
pub fn validate(spec: &EmailSpec) -> Result<(), String> {
    compile(spec).map(|_| ())
}

fn compile(spec: &EmailSpec) -> Result<Compiled, String> {
    let (target, credentials) = crate::probe::mail::transport(
        &spec.smtp,
        spec.user.as_ref(),
        spec.password.as_ref(),
        spec.ca_file.is_some(),
    )?;
    let from = parse_mailbox("from", &spec.from)?;
    if spec.to.is_empty() {
        return Err("`to` is empty; list at least one recipient".into());
    }
    let to = spec
        .to
        .iter()
        .map(|t| parse_mailbox("to", t))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Compiled {
        target,
        credentials,
        from,
        to,
    })
}

/// Sends alerts by e-mail.
pub struct EmailNotifier {
    label: String,
    compiled: Compiled,
    tls: Option<TlsParameters>,
    hello: ClientId,
    timeout: Duration,
}

impl EmailNotifier {
    /// Builds the notifier: reads `ca_file`, sets up TLS.
    pub fn build(name: &str, spec: &EmailSpec, timeout: Duration) -> Result<Self, String> {
        let compiled = compile(spec)?;
        let tls = match compiled.target.security {
            target::Security::Plain => None,
            target::Security::StartTls | target::Security::Implicit => {
                Some(target::tls_parameters(
                    &compiled.target.host,
                    spec.ca_file
                        .as_ref()
                        .map(|t| PathBuf::from(t.expose()))
                        .as_deref(),
                )?)
            }
        };
        Ok(EmailNotifier {
            label: format!("email {name:?}"),
            compiled,
            tls,
            hello: ClientId::default(),
            timeout,
        })
    }

    async fn deliver(&self, n: &Notification) -> Result<(), NotifyError> {
        let message = self.message(n)?;
        let c = &self.compiled;
        let session = smtp::Session {
            target: &c.target,
            tls: self.tls.as_ref(),
            hello: &self.hello,
            credentials: c.credentials.as_ref().map(|(u, p)| (u.as_str(), p)),
        };
        // The dialogue records phases for check reports; a notifier has no use for them.
        let ctx = RunContext::new(Arc::from("notify"), String::new());
        let raw = message.formatted();
        let sent = tokio::time::timeout(
            self.timeout,
            smtp::send(&ctx, &session, message.envelope(), &raw),
        )
        .await;
        let failure = match sent {
            Ok(Ok(_accepted)) => return Ok(()),
            Ok(Err(failure)) => failure,
            Err(_) => {
                return Err(NotifyError::transient(format!(
                    "{}: smtp server {} did not finish within {}",
                    self.label,
                    c.target.addr(),
                    crate::value::Dur(self.timeout)
                )));
            }
        };
        let message = format!("{}: {}", self.label, failure.message);
        // A 4xx answer asks us to come back later; a dead or unreachable server may be back soon.
        // Anything else the server said (5xx) or a TLS/certificate problem will not change by
        // itself.
        let transient = failure.transient.is_some()
            || matches!(
                failure.kind,
                FailureKind::Timeout
                    | FailureKind::Connect
                    | FailureKind::Dns
                    | FailureKind::Protocol
            );
        Err(if transient {
            NotifyError::transient(message)
        } else {
            NotifyError::permanent(message)
        })
    }

    fn message(&self, n: &Notification) -> Result<Message, NotifyError> {
        let rendered = super::render::render(n);
        let fingerprints = if let Some(d) = &n.digest {
            format!("digest:{}:{}", n.shop, d.period)
        } else if n.alerts.is_empty() {
            "test".to_string()
        } else {
            n.alerts
                .iter()
                .map(|a| a.fingerprint.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut builder = Message::builder()
            .from(self.compiled.from.clone())
            .subject(rendered.title)
            .date(SystemTime::now())
            .user_agent(crate::USER_AGENT.to_string())
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Auto-Submitted"),
                "auto-generated".to_string(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str(ALERT_HEADER),
                fingerprints,
            ));
        for to in &self.compiled.to {
            builder = builder.to(to.clone());
        }
        let mut body = rendered.body;
        body.push('\n');
        let built = match &n.digest {
            // A digest is HTML with the same words as text, for mail readers that show no HTML.
            Some(d) => builder.multipart(lettre::message::MultiPart::alternative_plain_html(
                body,
                d.html.clone(),
            )),
            None => builder.header(ContentType::TEXT_PLAIN).body(body),
        };
        built.map_err(|e| {
            NotifyError::permanent(format!("{}: cannot build the message: {e}", self.label))
        })
    }
}

impl Notifier for EmailNotifier {
    fn send<'a>(&'a self, n: &'a Notification) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(self.deliver(n))
    }
}

/// Host of the `smtp` URL.
pub fn server_host(spec: &EmailSpec) -> Option<String> {
    crate::probe::mail::target::Target::parse(&spec.smtp)
        .ok()
        .map(|t| t.host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(smtp: &str, to: &[&str]) -> EmailSpec {
        EmailSpec {
            smtp: Text::literal(smtp),
            user: None,
            password: None,
            ca_file: None,
            from: Text::literal("supportwatch <alerts@monitor.example>"),
            to: to.iter().map(|t| Text::literal(*t)).collect(),
        }
    }

    #[test]
    fn validation_covers_url_recipients_and_auth() {
        assert!(
            validate(&spec(
                "smtp+starttls://mail.example:587",
                &["a@shop.example"]
            ))
            .is_ok()
        );
        let err = validate(&spec("smtp://mail.example", &[])).unwrap_err();
        assert!(err.contains("`to` is empty"), "{err}");
        let err = validate(&spec("smtp://mail.example", &["not an address"])).unwrap_err();
        assert!(err.contains("invalid `to` address"), "{err}");
        let err = validate(&spec("http://mail.example", &["a@b.example"])).unwrap_err();
        assert!(err.contains("must be smtp://"), "{err}");
        let mut s = spec("smtp://mail.example", &["a@b.example"]);
        s.user = Some(Text::literal("u"));
        s.password = Some(serde_json::from_value(serde_json::json!("hunter2")).unwrap());
        let err = validate(&s).unwrap_err();
        assert!(
            err.contains("unencrypted") && !err.contains("hunter2"),
            "{err}"
        );
        assert_eq!(server_host(&s).as_deref(), Some("mail.example"));
    }
}
