//! `phone` checks: is the shop's PBX or SIP trunk there, and does it answer?
//!
//! `via: options` sends a SIP OPTIONS request, the ping every PBX answers, and times the round
//! trip. With `phone: NAME` the request goes through that account's proxy and answers its
//! digest challenge (401/407) with the account's credentials. The answer's status decides:
//! `expect.status` (200 by default) passes, the rest fail with a reason an owner can act on —
//! `auth`, `not_found`, `unavailable`, or `rejected` with the code and phrase.
//!
//! Phases: `connect` (name lookup, socket, TCP and TLS handshakes), `options` (the first round
//! trip) and, when the server asks for credentials, `auth` (the authenticated round trip).
//!
//! `via: call` places a real call and listens to the line: see `phone_call`.

use super::{Probe, Shared};
use crate::outcome::{FailureKind, Outcome, RunContext};
use crate::sip::digest::Credentials;
use crate::sip::transaction::{self, Exchange};
use crate::sip::transport::Connection;
use crate::sip::uac::{self, Client};
use crate::sip::{PhoneSpec, Response, SipError, SipUri, Transport};
use crate::value::{Dur, Text};
use futures::future::BoxFuture;
use serde::Deserialize;
use std::path::Path;
use std::sync::Arc;

/// Config of a `phone` check.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneCheckSpec {
    /// What the check does: `options` (a ping of the PBX) or `call`.
    pub via: Via,
    /// The SIP URI to ping or call directly (`sip:pbx.shop.example`,
    /// `sip:100@pbx.shop.example;transport=tcp`); the account's proxy when absent. `${ENV}`
    /// allowed.
    pub target: Option<Text>,
    /// `via: call`: the number (`+74950000000`, `100`) or SIP URI to call through the account's
    /// proxy.
    pub to: Option<Text>,
    /// `via: call`: how long to listen to the line once answered (default 3 s).
    pub listen: Option<Dur>,
    /// `via: call`: ringing (180/183) is success; the call is cancelled at once, never answered.
    #[serde(default)]
    pub ring_only: bool,
    /// The account under `phones:` to send as: its proxy carries the request and its
    /// credentials answer challenges.
    pub phone: Option<String>,
    /// What counts as an answer.
    #[serde(default)]
    pub expect: PhoneExpect,
    /// PEM file with the CA(s) to trust for a TLS target reached without an account.
    pub ca_file: Option<Text>,
    /// The DNS server for SRV and A/AAAA lookups of the target (or the account's proxy),
    /// instead of the account's or the system's (`127.0.0.1:5353`).
    pub nameserver: Option<Text>,
}

/// How a `phone` check proves the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// An OPTIONS ping.
    Options,
    /// A real call: INVITE, ring, answer, listen, hang up.
    Call,
}

/// `expect:` of a `phone` check.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneExpect {
    /// `via: options`: final statuses that pass (default `[200]`).
    pub status: Option<Vec<u16>>,
    /// `via: call`: how long the line may ring before the call counts as unanswered
    /// (default 30 s).
    pub answer_within: Option<Dur>,
    /// `via: call`: whether something must be heard once answered (default true).
    pub audio: Option<bool>,
    /// `via: call`: the least RMS level, in dBFS, that counts as heard (default −50).
    pub min_level_dbfs: Option<f64>,
}

fn default_status() -> Vec<u16> {
    vec![200]
}

/// The default of `listen`.
pub const DEFAULT_LISTEN: Dur = Dur::secs(3);
/// The default of `expect.answer_within`.
pub const DEFAULT_ANSWER_WITHIN: Dur = Dur::secs(30);
/// The default of `expect.min_level_dbfs`: far above digital silence and line hiss (−70 and
/// below), far below any greeting (−30 to −15).
pub const DEFAULT_MIN_LEVEL_DBFS: f64 = -50.0;

/// Checks what serde cannot, at load time (the account's existence is checked with the
/// other sections, in `config`).
pub fn validate(spec: &PhoneCheckSpec) -> Result<(), String> {
    nameserver(spec)?;
    match spec.via {
        Via::Options => {
            let call_only = [
                ("to", spec.to.is_some()),
                ("listen", spec.listen.is_some()),
                ("ring_only", spec.ring_only),
                ("expect.answer_within", spec.expect.answer_within.is_some()),
                ("expect.audio", spec.expect.audio.is_some()),
                (
                    "expect.min_level_dbfs",
                    spec.expect.min_level_dbfs.is_some(),
                ),
            ];
            if let Some((field, _)) = call_only.iter().find(|(_, set)| *set) {
                return Err(format!("`{field}` applies to `via: call` only"));
            }
        }
        Via::Call => return super::phone_call::validate(spec),
    }
    match (&spec.target, &spec.phone) {
        (None, None) => {
            return Err(
                "set `target` (a SIP URI such as `sip:pbx.shop.example`) or `phone` \
                        (an account under `phones:`)"
                    .into(),
            );
        }
        (Some(target), _) => {
            let uri = parse_target(target)?;
            if spec.ca_file.is_some() && (uri.transport != Transport::Tls || spec.phone.is_some()) {
                return Err(
                    "`ca_file` applies to a TLS `target` reached without an account; an \
                            account's trust is its own `ca_file`"
                        .into(),
                );
            }
        }
        (None, Some(_)) => {
            if spec.ca_file.is_some() {
                return Err("`ca_file` of an account is set under `phones:`".into());
            }
        }
    }
    let status = spec.expect.status.clone().unwrap_or_else(default_status);
    if status.is_empty() {
        return Err(
            "`expect.status` is empty; list the final statuses that pass, e.g. [200]".into(),
        );
    }
    if let Some(bad) = status.iter().find(|s| !(200..=699).contains(*s)) {
        return Err(format!(
            "`expect.status` {bad} is not a final SIP status (200 to 699)"
        ));
    }
    Ok(())
}

pub(super) fn parse_target(target: &Text) -> Result<SipUri, String> {
    SipUri::parse(target.expose()).map_err(|e| format!("`target` {target}: {e}"))
}

/// A one-line description, safe to print.
pub fn summary(spec: &PhoneCheckSpec) -> String {
    let via = match spec.via {
        Via::Options => "OPTIONS",
        Via::Call => "INVITE",
    };
    if let (Some(to), Some(p)) = (&spec.to, &spec.phone) {
        return format!("{via} {to} as {p}");
    }
    match (&spec.target, &spec.phone) {
        (Some(t), Some(p)) => format!("{via} {t} as {p}"),
        (Some(t), None) => format!("{via} {t}"),
        (None, Some(p)) => format!("{via} the proxy of {p}"),
        (None, None) => via.to_string(),
    }
}

/// The check's parsed `nameserver`, if set.
fn nameserver(spec: &PhoneCheckSpec) -> Result<Option<std::net::SocketAddr>, String> {
    spec.nameserver
        .as_ref()
        .map(|n| crate::sip::locate::parse_nameserver(n.expose()))
        .transpose()
}

/// A ready-to-run `phone` check.
pub struct PhoneProbe {
    /// The Request-URI, printable form (the template as written).
    pub(super) label: String,
    pub(super) target: SipUri,
    /// Where the request is sent: the account's proxy, else the target.
    pub(super) next_hop: SipUri,
    pub(super) from: SipUri,
    pub(super) credentials: Option<(String, String)>,
    pub(super) account: Option<String>,
    pub(super) tls: Option<tokio_rustls::TlsConnector>,
    /// Where SRV and A/AAAA lookups of the next hop go (the system's resolvers when `None`).
    pub(super) nameserver: Option<std::net::SocketAddr>,
    expect: Vec<u16>,
    /// `via: call`: what the call does and the account's line.
    pub(super) call: Option<super::phone_call::CallPlan>,
}

impl PhoneProbe {
    /// Builds the probe with the account it names (from `shared.phones`).
    pub fn build(spec: &PhoneCheckSpec, shared: &Shared) -> Result<Self, String> {
        validate(spec)?;
        let account: Option<&Arc<PhoneSpec>> = match &spec.phone {
            Some(name) => Some(
                shared
                    .phones
                    .get(name)
                    .ok_or_else(|| format!("`phone: {name}` names no account under `phones:`"))?,
            ),
            None => None,
        };
        let target = match (&spec.to, account) {
            (Some(to), Some(a)) => Some(super::phone_call::number_uri(to, &a.from_uri()?)?),
            _ => spec.target.as_ref().map(parse_target).transpose()?,
        };
        let (next_hop, from, credentials, ca_file) = match account {
            Some(a) => (
                a.proxy_uri()?,
                a.from_uri()?,
                a.password
                    .as_ref()
                    .map(|p| (a.auth_name().to_string(), p.expose().to_string())),
                a.ca_file.as_ref(),
            ),
            None => {
                let t = target.clone().ok_or("no target")?;
                let from = SipUri::parse(&format!("sip:supportwatch@{}", t.host_for_uri()))?;
                (t, from, None, spec.ca_file.as_ref())
            }
        };
        let tls = match next_hop.transport {
            Transport::Tls => {
                let roots = crate::tlsconf::roots(ca_file.map(|t| Path::new(t.expose())))?;
                let config = crate::tlsconf::client_config(roots);
                Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
            }
            Transport::Udp | Transport::Tcp => None,
        };
        // A number is shown as written; a URI as resolved, so a `${HOST}` in it reads as the
        // address that was called (a SIP URI carries no password: digest credentials live in the
        // account, and the redactor still scrubs every secret from reports).
        let label = match (&spec.target, account) {
            _ if spec.to.is_some() => spec.to.as_ref().map(Text::to_string).unwrap_or_default(),
            (Some(_), _) => target.as_ref().map(SipUri::to_string).unwrap_or_default(),
            (None, Some(_)) => next_hop.to_string(),
            (None, None) => String::new(),
        };
        let nameserver = match (nameserver(spec)?, account) {
            (Some(own), _) => Some(own),
            (None, Some(a)) => a.nameserver()?,
            (None, None) => None,
        };
        Ok(PhoneProbe {
            nameserver,
            label,
            target: target.unwrap_or_else(|| next_hop.clone()),
            next_hop,
            from,
            credentials,
            account: spec.phone.clone(),
            tls,
            expect: spec.expect.status.clone().unwrap_or_else(default_status),
            call: match spec.via {
                Via::Options => None,
                Via::Call => Some(super::phone_call::CallPlan::new(spec, shared)),
            },
        })
    }

    async fn attempt(&self, ctx: &RunContext) -> Outcome {
        ctx.begin("connect");
        let mut conn =
            match Connection::open_via(&self.next_hop, self.tls.as_ref(), self.nameserver).await {
                Ok(c) => c,
                Err(e) => return self.transport_failure(e),
            };
        // Where an SRV lookup led is worth saying: it is not what the URI shows.
        let route = conn.found_by_srv().then(|| {
            format!(
                "{} found through SRV: {} over {}",
                self.next_hop.host,
                conn.peer_addr(),
                conn.transport().via_name()
            )
        });
        ctx.begin("options");
        let mut client = Client::new(self.from.clone());
        let mut exchange = match self.exchange(&mut conn, &mut client, None).await {
            Ok(x) => x,
            Err(e) => return self.transport_failure(e),
        };
        let challenged = matches!(exchange.response.status, 401 | 407);
        if let (true, Some((user, password))) = (challenged, &self.credentials) {
            let credentials = Credentials { user, password };
            let answer =
                uac::answer_challenge(&exchange.response, &credentials, "OPTIONS", &self.target);
            let answer = match answer {
                Ok(a) => a,
                Err(e) => {
                    return Outcome::fail(
                        FailureKind::Auth,
                        format!("cannot answer the challenge of {}: {e}", self.label),
                    );
                }
            };
            ctx.begin("auth");
            exchange = match self.exchange(&mut conn, &mut client, Some(answer)).await {
                Ok(x) => x,
                Err(e) => return self.transport_failure(e),
            };
        }
        ctx.end();
        let mut outcome = self.judge(&exchange, challenged);
        outcome.details.splice(0..0, route);
        outcome
    }

    async fn exchange(
        &self,
        conn: &mut Connection,
        client: &mut Client,
        authorization: Option<(uac::AuthHeader, String)>,
    ) -> Result<Exchange, SipError> {
        let (request, branch) = client.request(conn, "OPTIONS", &self.target, authorization);
        transaction::non_invite(conn, &request, &branch, transaction::TIMER_F).await
    }

    pub(super) fn transport_failure(&self, e: SipError) -> Outcome {
        let kind = match &e {
            SipError::Dns { .. } => FailureKind::Dns,
            SipError::Connect { .. } => FailureKind::Connect,
            SipError::Tls { .. } => FailureKind::Tls,
            SipError::Timeout(_) => FailureKind::Timeout,
            SipError::Protocol(_) => FailureKind::Protocol,
        };
        Outcome::fail(kind, format!("OPTIONS {}: {e}", self.label))
    }

    fn judge(&self, exchange: &Exchange, challenged: bool) -> Outcome {
        let Response { status, reason, .. } = &exchange.response;
        let answered = format!(
            "OPTIONS {} answered {status} {reason} in {:.1} ms",
            self.label,
            exchange.rtt.as_secs_f64() * 1000.0
        );
        if self.expect.contains(status) {
            let mut outcome = Outcome::pass();
            outcome.details.push(answered);
            return outcome;
        }
        let (kind, message) = match status {
            401 | 407 => match (&self.account, &self.credentials, challenged) {
                (Some(account), Some(_), true) => (
                    FailureKind::Auth,
                    format!("the server refused the credentials of phone `{account}`"),
                ),
                _ => (
                    FailureKind::Auth,
                    "the server asks for credentials; name an account with a password in `phone`"
                        .to_string(),
                ),
            },
            404 | 484 => (
                FailureKind::NotFound,
                "the server does not know this URI".to_string(),
            ),
            480 | 503 => (
                FailureKind::Unavailable,
                "the line is unavailable".to_string(),
            ),
            _ => (
                FailureKind::Rejected,
                format!("expected {}", statuses(&self.expect)),
            ),
        };
        let mut outcome = Outcome::fail(kind, format!("{answered}: {message}"));
        outcome.details.push(answered);
        outcome
    }
}

fn statuses(list: &[u16]) -> String {
    list.iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(" or ")
}

impl Probe for PhoneProbe {
    fn hosts(&self) -> Vec<String> {
        vec![crate::net::endpoint(
            &self.next_hop.host,
            Some(self.next_hop.effective_port()),
        )]
    }

    fn run<'a>(&'a self, ctx: &'a RunContext) -> BoxFuture<'a, Outcome> {
        match &self.call {
            Some(plan) => Box::pin(super::phone_call::attempt(self, plan, ctx)),
            None => Box::pin(self.attempt(ctx)),
        }
    }
}
