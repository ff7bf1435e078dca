//! `mail` checks: send a test mail over SMTP, then prove it arrived (and was acknowledged).
//!
//! One attempt renders the message ([`message`]), waits for its turn on the SMTP account
//! ([`account`]: one session per account at a time, `min_interval`, back-off after a 4xx), runs
//! the SMTP dialogue ([`smtp`]) and, once the server accepted the message, hands the waiting for
//! it (`deliver`) and for the shop's acknowledgement (`auto_reply`) to [`crate::deliver`], which
//! the runner awaits after the run's concurrency permits are released.
//!
//! A failure names what was refused and quotes the server (`mailbox full: 552 5.2.2 …`,
//! `smtp authentication as monitor@… failed: 535 …`); it never contains the password.

mod account;
mod classify;
mod message;
// The e-mail notifier sends alerts through the same SMTP dialogue and URL rules.
pub(crate) mod smtp;
pub(crate) mod target;

pub use message::TOKEN_HEADER;

use super::{Probe, Shared};
use crate::deliver::{AutoReplySpec, DeliverSpec, Mailboxes};
use crate::outcome::{FailureKind, Outcome, RunContext};
use crate::value::{Dur, Secret, Template, TemplateVars, Text};
use account::Account;
use futures::future::BoxFuture;
use lettre::message::Mailbox;
use lettre::transport::smtp::client::TlsParameters;
use lettre::transport::smtp::extension::ClientId;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use target::{Security, Target};

/// A `mail` check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailSpec {
    /// `smtp://host[:25]` (no TLS), `smtp+starttls://host[:587]` (STARTTLS required) or
    /// `smtps://host[:465]` (implicit TLS); `${ENV}` allowed.
    pub smtp: Text,
    /// SMTP AUTH login (PLAIN or LOGIN, whichever the server offers); needs TLS.
    pub user: Option<Text>,
    /// SMTP AUTH password; `${ENV}` or `${file:…}`, never printed.
    pub password: Option<Secret>,
    /// PEM file with the CA(s) to trust instead of the system roots.
    pub ca_file: Option<Text>,
    /// Name sent in EHLO (default: this machine's host name).
    pub helo: Option<Text>,
    /// Sender, `Name <address>` or `address`; also the envelope sender, where auto-replies go.
    pub from: Text,
    /// The support address under test.
    pub to: Text,
    /// Subject template (`{{token}}`, `{{check}}`, `{{now}}`);
    /// default `[supportwatch] automated test {{token}}`.
    pub subject: Option<Template>,
    /// Body template; the default says it is an automated test and carries the token.
    pub body: Option<Template>,
    /// Least time between two sends through the same SMTP account (login and server, or the
    /// server without AUTH), counted across every check of this process; a run that would send
    /// sooner waits, within its `timeout`.
    pub min_interval: Option<Dur>,
    /// Where the submitted message must arrive.
    pub deliver: Option<DeliverSpec>,
    /// The automatic acknowledgement that must reach the sender.
    pub auto_reply: Option<AutoReplySpec>,
}

/// What [`validate`] works out and the probe keeps, so it is worked out once.
struct Compiled {
    target: Target,
    from: Mailbox,
    to: Mailbox,
    hello: ClientId,
    subject: Template,
    body: Template,
    credentials: Option<(String, Secret)>,
}

/// Checks a spec at load time: URL, TLS and AUTH together, addresses, EHLO name, templates.
pub fn validate(spec: &MailSpec) -> Result<(), String> {
    compile(spec).map(|_| ())
}

fn compile(spec: &MailSpec) -> Result<Compiled, String> {
    let (target, credentials) = transport(
        &spec.smtp,
        spec.user.as_ref(),
        spec.password.as_ref(),
        spec.ca_file.is_some(),
    )?;
    let from = parse_mailbox("from", &spec.from)?;
    let to = parse_mailbox("to", &spec.to)?;
    let hello = match &spec.helo {
        None => ClientId::default(),
        Some(name) => parse_helo(name)?,
    };
    let subject = template(spec.subject.as_ref(), message::DEFAULT_SUBJECT)?;
    let body = template(spec.body.as_ref(), message::DEFAULT_BODY)?;
    let sample = TemplateVars {
        token: "sw-x-1-0",
        check: "x",
        now: "2026-01-01T00:00:00Z",
    };
    if subject.render(&sample).contains(['\r', '\n']) {
        return Err("`subject` must be a single line".into());
    }
    if !subject.uses_token() && !body.uses_token() {
        return Err(
            "put `{{token}}` in `subject` or `body`: helpdesks and autoresponders often keep \
             only those, and the token is how the delivery and the auto-reply are recognised"
                .into(),
        );
    }
    Ok(Compiled {
        target,
        from,
        to,
        hello,
        subject,
        body,
        credentials,
    })
}

/// The `smtp` URL with its login and `ca_file`, checked together: AUTH only over TLS (or to a
/// loopback relay), `ca_file` only with TLS.
pub(crate) fn transport(
    smtp: &Text,
    user: Option<&Text>,
    password: Option<&Secret>,
    has_ca_file: bool,
) -> Result<(Target, Option<(String, Secret)>), String> {
    let target = Target::parse(smtp)?;
    let credentials = match (user, password) {
        (Some(user), Some(password)) => Some((user.expose().to_string(), password.clone())),
        (None, None) => None,
        _ => return Err("set both `user` and `password` for SMTP AUTH, or neither".into()),
    };
    if target.security == Security::Plain {
        if credentials.is_some() && !target.is_loopback() {
            return Err(format!(
                "`user`/`password` over plain `{smtp}` would send the password unencrypted; use \
                 smtp+starttls://{host}:587 or smtps://{host}:465 (plain AUTH is allowed to a \
                 loopback relay only)",
                host = target.url_host()
            ));
        }
        if has_ca_file {
            return Err(format!(
                "`ca_file` needs TLS, but `{smtp}` is plain SMTP; use smtp+starttls:// or smtps://"
            ));
        }
    }
    Ok((target, credentials))
}

pub(crate) fn parse_mailbox(field: &str, text: &Text) -> Result<Mailbox, String> {
    text.expose().parse::<Mailbox>().map_err(|e| {
        format!(
            "invalid `{field}` address `{text}` ({}): write `user@domain` or \
                 `Name <user@domain>`",
            e.to_string().to_lowercase()
        )
    })
}

fn parse_helo(name: &Text) -> Result<ClientId, String> {
    let value = name.expose();
    if value.is_empty() || !value.chars().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "invalid `helo` `{name}`: expected a host name such as monitor.example.ru"
        ));
    }
    Ok(match value.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ClientId::Ipv4(ip),
        Ok(IpAddr::V6(ip)) => ClientId::Ipv6(ip),
        Err(_) => ClientId::Domain(value.to_string()),
    })
}

fn template(given: Option<&Template>, default: &str) -> Result<Template, String> {
    match given {
        Some(t) => Ok(t.clone()),
        None => Template::parse(Text::literal(default)),
    }
}

/// A ready-to-run `mail` check.
pub struct MailProbe {
    spec: Arc<MailSpec>,
    compiled: Compiled,
    tls: Option<TlsParameters>,
    account: Arc<Account>,
    mailboxes: Mailboxes,
}

impl MailProbe {
    /// Builds the probe: reads `ca_file`, sets up TLS, joins the account's pacing.
    pub fn build(spec: &Arc<MailSpec>, shared: &Shared) -> Result<Self, String> {
        shared
            .mailboxes
            .check(spec.deliver.as_ref(), spec.auto_reply.as_ref())?;
        let compiled = compile(spec)?;
        let tls = match compiled.target.security {
            Security::Plain => None,
            Security::StartTls | Security::Implicit => Some(target::tls_parameters(
                &compiled.target.host,
                spec.ca_file
                    .as_ref()
                    .map(|t| PathBuf::from(t.expose()))
                    .as_deref(),
            )?),
        };
        let user = compiled.credentials.as_ref().map(|(u, _)| u.as_str());
        let account = account::account(compiled.target.account(user));
        Ok(MailProbe {
            spec: spec.clone(),
            compiled,
            tls,
            account,
            mailboxes: shared.mailboxes.clone(),
        })
    }

    async fn attempt(&self, ctx: &RunContext) -> Outcome {
        let c = &self.compiled;
        let now = ctx.now_rfc3339();
        let vars = TemplateVars {
            token: &ctx.token,
            check: &ctx.check,
            now: &now,
        };
        let draft = message::Draft {
            from: &c.from,
            to: &c.to,
            subject: c.subject.render(&vars),
            body: c.body.render(&vars),
            token: &ctx.token,
            date: SystemTime::now(),
        };
        let message = match message::build(&draft) {
            Ok(m) => m,
            Err(e) => return Outcome::fail(FailureKind::Internal, e),
        };
        let raw = message.formatted();
        let server = format!("smtp {} ({})", c.target.addr(), c.target.security);

        // One session per account at a time; the guard is held until the session is over, so
        // `min_interval` and a back-off ordered by the server hold across every check.
        let mut queued = false;
        let mut pacing = match self.account.state.try_lock() {
            Ok(pacing) => pacing,
            Err(_) => {
                ctx.begin("queue");
                queued = true;
                self.account.state.lock().await
            }
        };
        // A back-off that is about to end is waited out rather than failing the run: the server
        // asked for a pause, not for this run to be lost.
        if let Some(wait) = pacing.backoff_wait(Instant::now(), ctx.deadline()) {
            if !queued {
                ctx.begin("queue");
                queued = true;
            }
            tokio::time::sleep(wait).await;
        }
        if let Some(backoff) = pacing.backing_off(Instant::now()) {
            ctx.end();
            let left = backoff.until.saturating_duration_since(Instant::now());
            let mut outcome = Outcome::fail(
                FailureKind::Smtp,
                format!(
                    "smtp account {} backing off for {} after {}; next send in {}",
                    self.account.key,
                    Dur(backoff.period),
                    backoff.cause,
                    crate::value::short_duration(left)
                ),
            );
            outcome.details.push(server);
            return outcome;
        }
        let min_interval = self.spec.min_interval.unwrap_or_default().get();
        let wait = pacing.wait_needed(Instant::now(), min_interval);
        if !wait.is_zero() {
            if !queued {
                ctx.begin("queue");
            }
            tokio::time::sleep(wait).await;
        }

        let session = smtp::Session {
            target: &c.target,
            tls: self.tls.as_ref(),
            hello: &c.hello,
            credentials: c.credentials.as_ref().map(|(u, p)| (u.as_str(), p)),
        };
        let result = smtp::send(ctx, &session, message.envelope(), &raw).await;
        match result {
            Ok(accepted) => {
                pacing.used(Instant::now());
                pacing.success();
                drop(pacing);
                let mut outcome = Outcome::pass();
                outcome.details.push(server);
                if !wait.is_zero() {
                    outcome.details.push(format!(
                        "waited {} for min_interval {} of smtp account {}",
                        crate::value::short_duration(wait),
                        Dur(min_interval),
                        self.account.key
                    ));
                }
                if let (Some(mechanism), Some((user, _))) = (accepted.mechanism, &c.credentials) {
                    outcome
                        .details
                        .push(format!("authenticated as {user} ({mechanism})"));
                }
                outcome
                    .details
                    .push(format!("accepted: {}", accepted.answer));
                outcome
                    .details
                    .push(format!("message-id {}", message::message_id(&ctx.token)));
                outcome.follow_up = crate::deliver::follow_up(
                    ctx,
                    accepted.submitted_at,
                    self.spec.deliver.as_ref(),
                    self.spec.auto_reply.as_ref(),
                    &self.mailboxes,
                    Some(c.from.email.as_ref()),
                );
                outcome
            }
            Err(failure) => {
                let now = Instant::now();
                if failure.reached {
                    pacing.used(now);
                }
                let mut text = failure.message;
                if let Some(cause) = failure.transient {
                    let period = pacing.transient(now, cause);
                    text.push_str(&format!(
                        "; smtp account {} backs off for {}",
                        self.account.key,
                        Dur(period)
                    ));
                }
                let mut outcome = Outcome::fail(failure.kind, text);
                outcome.details.push(server);
                outcome
            }
        }
    }
}

impl Probe for MailProbe {
    fn hosts(&self) -> Vec<String> {
        let target = &self.compiled.target;
        vec![crate::net::endpoint(&target.host, Some(target.port))]
    }

    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, Outcome> {
        Box::pin(self.attempt(ctx))
    }
}

/// What `list` shows.
pub fn summary(spec: &MailSpec) -> String {
    format!("mail to {} via {}", spec.to, spec.smtp)
}
