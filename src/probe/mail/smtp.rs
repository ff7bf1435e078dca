//! The SMTP dialogue of one run, one command at a time, every failure classified and worded.
//!
//! lettre's `AsyncSmtpTransport` does connect, TLS, AUTH and the whole transaction in one call and
//! returns a bare error, so neither the phase that was slow nor the command that was refused can
//! be told apart. This module drives lettre's `AsyncSmtpConnection` (the connection the transport
//! itself uses) step by step instead: phases `connect` (TCP, implicit TLS, greeting, EHLO), `tls`
//! (STARTTLS), `auth` and `submit` (MAIL, RCPT, DATA), and a refused RCPT TO reads as "mailbox
//! full" while a refused AUTH reads as a login problem.

use super::classify::{CONNECT_TIMEOUT, Failer, STEP_TIMEOUT, SmtpFailure, Step, one_line};
use super::target::{Security, Target};
use crate::outcome::{FailureKind, RunContext};
use crate::value::Secret;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use std::time::{Duration, SystemTime};

/// Bound on the polite QUIT at the end; its answer does not matter.
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);
/// The AUTH mechanisms we offer, in order of preference.
const MECHANISMS: [Mechanism; 2] = [Mechanism::Plain, Mechanism::Login];

/// Everything one session needs besides the message.
pub struct Session<'a> {
    /// The server.
    pub target: &'a Target,
    /// TLS parameters; `Some` unless the target is plain `smtp://`.
    pub tls: Option<&'a TlsParameters>,
    /// Name sent in EHLO.
    pub hello: &'a ClientId,
    /// Login and password for AUTH.
    pub credentials: Option<(&'a str, &'a Secret)>,
}

/// A message the server accepted.
#[derive(Debug)]
pub struct Accepted {
    /// Wall-clock time right before MAIL FROM: deliveries are looked for from here on.
    pub submitted_at: SystemTime,
    /// The server's answer to the message, e.g. `250 2.0.0 Ok: queued as 4Xb2`.
    pub answer: String,
    /// The AUTH mechanism used, if any.
    pub mechanism: Option<Mechanism>,
}

/// Runs `fut` as one step under [`STEP_TIMEOUT`].
async fn step<T>(
    failer: &Failer<'_>,
    which: Step<'_>,
    fut: impl Future<Output = Result<T, lettre::transport::smtp::Error>>,
) -> Result<T, SmtpFailure> {
    match tokio::time::timeout(STEP_TIMEOUT, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(failer.classify(which, &e)),
        Err(_) => Err(failer.timeout(which)),
    }
}

/// Sends `raw` to the envelope's recipients, recording phases in `ctx`.
pub async fn send(
    ctx: &RunContext,
    session: &Session<'_>,
    envelope: &Envelope,
    raw: &[u8],
) -> Result<Accepted, SmtpFailure> {
    let target = session.target;
    let mut failer = Failer {
        target,
        password: session.credentials.map(|(_, p)| p.expose()),
        reached: false,
    };
    ctx.begin("connect");
    let addrs = match tokio::time::timeout(
        STEP_TIMEOUT,
        tokio::net::lookup_host((target.host.as_str(), target.port)),
    )
    .await
    {
        Ok(Ok(addrs)) => addrs.collect::<Vec<_>>(),
        Ok(Err(e)) => {
            ctx.end();
            return Err(failer.fail(
                FailureKind::Dns,
                format!("smtp server name {} does not resolve: {e}", target.host),
                None,
            ));
        }
        Err(_) => {
            ctx.end();
            return Err(failer.fail(
                FailureKind::Dns,
                format!(
                    "smtp server name {} did not resolve within {}",
                    target.host,
                    crate::value::short_duration(STEP_TIMEOUT)
                ),
                None,
            ));
        }
    };
    let implicit = match target.security {
        Security::Implicit => session.tls.cloned(),
        Security::Plain | Security::StartTls => None,
    };
    let connected = step(
        &failer,
        Step::Connect,
        AsyncSmtpConnection::connect_tokio1(
            addrs.as_slice(),
            Some(CONNECT_TIMEOUT),
            session.hello,
            implicit,
            None,
        ),
    )
    .await;
    let mut conn = match connected {
        Ok(conn) => conn,
        Err(failure) => {
            ctx.end();
            return Err(failure);
        }
    };
    failer.reached = true;
    let result = dialogue(ctx, session, &failer, &mut conn, envelope, raw).await;
    ctx.end();
    // QUIT after success, abort after failure; neither answer matters, both are bounded.
    match &result {
        Ok(_) => {
            let _ = tokio::time::timeout(QUIT_TIMEOUT, conn.quit()).await;
        }
        Err(_) => {
            let _ = tokio::time::timeout(QUIT_TIMEOUT, conn.abort()).await;
        }
    }
    result
}

async fn dialogue(
    ctx: &RunContext,
    session: &Session<'_>,
    failer: &Failer<'_>,
    conn: &mut AsyncSmtpConnection,
    envelope: &Envelope,
    raw: &[u8],
) -> Result<Accepted, SmtpFailure> {
    let addr = session.target.addr();
    if session.target.security == Security::StartTls {
        ctx.begin("tls");
        if !conn.server_info().supports_feature(Extension::StartTls) {
            return Err(failer.fail(
                FailureKind::Tls,
                format!(
                    "smtp server {addr} does not offer STARTTLS, which smtp+starttls:// requires"
                ),
                None,
            ));
        }
        let params = session.tls.cloned().ok_or_else(|| {
            failer.fail(
                FailureKind::Internal,
                "no TLS parameters for STARTTLS".into(),
                None,
            )
        })?;
        step(failer, Step::StartTls, conn.starttls(params, session.hello)).await?;
    }

    let mut mechanism = None;
    if let Some((user, password)) = session.credentials {
        ctx.begin("auth");
        let chosen = conn
            .server_info()
            .get_auth_mechanism(&MECHANISMS)
            .ok_or_else(|| {
                failer.fail(
                    FailureKind::Smtp,
                    format!(
                        "smtp authentication as {user} is not possible: {addr} offers neither AUTH \
                     PLAIN nor AUTH LOGIN here"
                    ),
                    None,
                )
            })?;
        let credentials = Credentials::new(user.to_string(), password.expose().to_string());
        step(failer, Step::Auth(user), conn.auth(&[chosen], &credentials)).await?;
        mechanism = Some(chosen);
    }

    ctx.begin("submit");
    let submitted_at = SystemTime::now();
    let mut parameters = Vec::new();
    let non_ascii = envelope
        .from()
        .into_iter()
        .chain(envelope.to())
        .any(|a| !AsRef::<str>::as_ref(a).is_ascii());
    if non_ascii {
        if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
            return Err(failer.fail(
                FailureKind::Smtp,
                format!("an address is not ASCII and smtp server {addr} does not offer SMTPUTF8"),
                None,
            ));
        }
        parameters.push(MailParameter::SmtpUtfEight);
    }
    if !raw.is_ascii() && conn.server_info().supports_feature(Extension::EightBitMime) {
        parameters.push(MailParameter::Body(MailBodyParameter::EightBitMime));
    }
    let from = envelope.from().map(ToString::to_string).unwrap_or_default();
    step(
        failer,
        Step::MailFrom(&from),
        conn.command(Mail::new(envelope.from().cloned(), parameters)),
    )
    .await?;
    for to in envelope.to() {
        let shown = to.to_string();
        step(
            failer,
            Step::RcptTo(&shown),
            conn.command(Rcpt::new(to.clone(), Vec::new())),
        )
        .await?;
    }
    step(failer, Step::Data, conn.command(Data)).await?;
    let response = step(failer, Step::Message, conn.message(raw)).await?;
    let text = one_line(&response.message().collect::<Vec<_>>().join(" "));
    let answer = failer.redact(format!("{} {text}", u16::from(response.code())));
    Ok(Accepted {
        submitted_at,
        answer: answer.trim_end().to_string(),
        mechanism,
    })
}
