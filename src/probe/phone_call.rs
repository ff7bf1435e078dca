//! `phone` checks with `via: call`: a real call to the hotline, judged as a customer would.
//!
//! The probe sends an INVITE offering G.711 (PCMU, PCMA) on an RTP socket bound next to the SIP
//! socket, answers a 401/407 with the account's credentials, and waits: the first 180/183 is the
//! ring, the 2xx the answer. Then it listens for `listen`, decodes what arrives and measures its
//! RMS level in dBFS, and hangs up with BYE. A line that rings past `expect.answer_within` is
//! cancelled (`no_answer`); one that answers and plays nothing, or nothing above
//! `expect.min_level_dbfs`, fails `silent_line` — a broken IVR is otherwise a silent failure.
//!
//! Phases: `line` (only when another call of the account holds its line), `connect`, `ringing`
//! (from the first INVITE, an authentication round trip included, until the first ring),
//! `answer` (from the ring until the 2xx), `listen` and `hangup`. The ring and answer times are
//! also observed from the INVITE that went through, so a challenge does not count as ringing.
//!
//! The call always ends within the run: the probe keeps [`HANG_UP_RESERVE`] of the run's timeout
//! for the hang-up, and a run cancelled with the call up hangs up from the call's drop guard.

use super::Shared;
use super::phone::{PhoneCheckSpec, PhoneProbe, parse_target};
use crate::outcome::{FailureKind, Observation, Outcome, RunContext};
use crate::sip::audio::LevelMeter;
use crate::sip::call::{Call, Event, HangUp};
use crate::sip::digest::Credentials;
use crate::sip::transport::Connection;
use crate::sip::{Response, SipUri, Transport, sdp, uac};
use crate::value::{Text, short_duration};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The part of the run's timeout kept for hanging up.
pub const HANG_UP_RESERVE: Duration = Duration::from_secs(2);

/// What a `via: call` check does, fixed at load.
pub struct CallPlan {
    listen: Duration,
    answer_within: Duration,
    audio: bool,
    min_level_dbfs: f64,
    ring_only: bool,
    /// The account's line (its `max_calls` permits); `None` for a direct call.
    line: Option<Arc<tokio::sync::Semaphore>>,
}

impl CallPlan {
    /// The plan of `spec`, with its account's line from `shared`.
    pub fn new(spec: &PhoneCheckSpec, shared: &Shared) -> CallPlan {
        CallPlan {
            listen: spec.listen.unwrap_or(super::phone::DEFAULT_LISTEN).get(),
            answer_within: spec
                .expect
                .answer_within
                .unwrap_or(super::phone::DEFAULT_ANSWER_WITHIN)
                .get(),
            audio: spec.expect.audio.unwrap_or(true),
            min_level_dbfs: spec
                .expect
                .min_level_dbfs
                .unwrap_or(super::phone::DEFAULT_MIN_LEVEL_DBFS),
            ring_only: spec.ring_only,
            line: spec
                .phone
                .as_ref()
                .and_then(|name| shared.phone_lines.get(name).cloned()),
        }
    }
}

/// Checks a `via: call` spec at load time.
pub fn validate(spec: &PhoneCheckSpec) -> Result<(), String> {
    if spec.expect.status.is_some() {
        return Err(
            "`expect.status` applies to `via: options`; a call passes when it is \
                    answered (or rings, with `ring_only`)"
                .into(),
        );
    }
    match (&spec.to, &spec.target, &spec.phone) {
        (Some(_), Some(_), _) => {
            return Err(
                "set either `to` (a number called through `phone`) or `target` \
                        (a SIP URI), not both"
                    .into(),
            );
        }
        (Some(_), None, None) => {
            return Err(
                "`to` is called through an account: set `phone`, or call a SIP URI \
                        directly with `target`"
                    .into(),
            );
        }
        (Some(to), None, Some(_)) => {
            // The domain is the account's; any will do to check the number's characters.
            let domain = SipUri::parse("sip:x@invalid").map_err(|e| e.to_string())?;
            number_uri(to, &domain)?;
        }
        (None, None, _) => {
            return Err(
                "set `to` (a number to call through `phone`) or `target` (a SIP URI \
                        such as `sip:100@pbx.shop.example`)"
                    .into(),
            );
        }
        (None, Some(target), _) => {
            let uri = parse_target(target)?;
            if spec.ca_file.is_some() && (uri.transport != Transport::Tls || spec.phone.is_some()) {
                return Err(
                    "`ca_file` applies to a TLS `target` reached without an account; \
                            an account's trust is its own `ca_file`"
                        .into(),
                );
            }
        }
    }
    if spec.ca_file.is_some() && spec.to.is_some() {
        return Err("`ca_file` of an account is set under `phones:`".into());
    }
    if spec.ring_only {
        let answered_only = [
            ("listen", spec.listen.is_some()),
            ("expect.audio", spec.expect.audio.is_some()),
            (
                "expect.min_level_dbfs",
                spec.expect.min_level_dbfs.is_some(),
            ),
        ];
        if let Some((field, _)) = answered_only.iter().find(|(_, set)| *set) {
            return Err(format!(
                "`{field}` does not apply with `ring_only: true` (the call is never answered)"
            ));
        }
    }
    if let Some(level) = spec.expect.min_level_dbfs
        && !(-100.0..=0.0).contains(&level)
    {
        return Err(format!(
            "`expect.min_level_dbfs` is {level}; allowed -100 to 0 (dBFS, full scale is 0)"
        ));
    }
    Ok(())
}

/// The Request-URI for `to`: a SIP URI as written, or a number at the account's domain
/// (spaces, dashes, dots and parentheses dropped: `+7 (495) 000-00-00`).
pub fn number_uri(to: &Text, from: &SipUri) -> Result<SipUri, String> {
    let text = to.expose().trim();
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("sip:") || lower.starts_with("sips:") {
        return SipUri::parse(text).map_err(|e| format!("`to` {to}: {e}"));
    }
    let number: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let plain = number.strip_prefix('+').unwrap_or(&number);
    if plain.is_empty()
        || !plain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "*#_".contains(c))
    {
        return Err(format!(
            "`to` {to} is neither a phone number nor a SIP URI (`sip:100@pbx.shop.example`)"
        ));
    }
    // `#` is not allowed bare in a SIP URI's user part.
    let user = number.replace('#', "%23");
    let mut uri = from.with_user(Some(&user));
    uri.port = None;
    Ok(uri)
}

/// One attempt of a `via: call` check.
pub(super) async fn attempt(probe: &PhoneProbe, plan: &CallPlan, ctx: &RunContext) -> Outcome {
    let now = Instant::now();
    // Everything but the hang-up must be over HANG_UP_RESERVE before the runner gives up.
    let stop = ctx
        .deadline()
        .map(Instant::from_std)
        .map_or(now + Duration::from_secs(86_400), |d| {
            d.checked_sub(HANG_UP_RESERVE).unwrap_or(now).max(now)
        });
    let _line = match &plan.line {
        Some(line) => match line.clone().try_acquire_owned() {
            Ok(permit) => Some(permit),
            Err(_) => {
                ctx.begin("line");
                let waited = Instant::now();
                match tokio::time::timeout_at(stop, line.clone().acquire_owned()).await {
                    Ok(Ok(permit)) => Some(permit),
                    Ok(Err(_)) | Err(_) => {
                        return Outcome::fail(
                            FailureKind::Timeout,
                            format!(
                                "another call of phone `{}` held its line for {} (one call at a \
                                 time per account; raise `max_calls` to allow more)",
                                probe.account.as_deref().unwrap_or_default(),
                                short_duration(waited.elapsed())
                            ),
                        );
                    }
                }
            }
        },
        None => None,
    };
    ctx.begin("connect");
    let conn =
        match Connection::open_via(&probe.next_hop, probe.tls.as_ref(), probe.nameserver).await {
            Ok(c) => c,
            Err(e) => return probe.transport_failure(e),
        };
    // The RTP socket lives next to the SIP socket: the same local address, which the SDP offer
    // names, so the far end's audio takes the path its signalling took.
    let local_ip = conn.local_addr().ip();
    let rtp = match tokio::net::UdpSocket::bind((local_ip, 0)).await {
        Ok(s) => s,
        Err(e) => {
            return Outcome::fail(
                FailureKind::Internal,
                format!("cannot open an RTP socket on {local_ip}: {e}"),
            );
        }
    };
    let offer = match rtp.local_addr() {
        Ok(addr) => sdp::offer(addr),
        Err(e) => return Outcome::fail(FailureKind::Internal, format!("RTP socket: {e}")),
    };
    let mut call = Call::new(conn, probe.from.clone());
    let label = format!("INVITE {}", probe.label);
    ctx.begin("ringing");
    if let Err(e) = call.invite(&probe.target, None, offer.clone()).await {
        return probe.transport_failure(e);
    }
    let mut sent = Instant::now();
    let mut challenged = false;
    let mut ring: Option<Duration> = None;
    let answered: Response = loop {
        let answer_by = (sent + plan.answer_within).min(stop);
        let event = match call.next_event(answer_by).await {
            Ok(e) => e,
            Err(e) => return probe.transport_failure(e),
        };
        match event {
            None => {
                let waited = sent.elapsed();
                ctx.begin("hangup");
                let hang_up = call.hang_up(HANG_UP_RESERVE).await;
                ctx.end();
                let rang = match ring {
                    Some(r) => format!("rang after {}, ", millis(r)),
                    None => "did not ring, ".to_string(),
                };
                let mut outcome =
                    if Instant::now() + HANG_UP_RESERVE >= stop && waited < plan.answer_within {
                        Outcome::fail(
                            FailureKind::Timeout,
                            format!(
                                "{label} {rang}not answered when the check's timeout came \
                             ({} of `answer_within` left)",
                                short_duration(plan.answer_within.saturating_sub(waited))
                            ),
                        )
                    } else {
                        Outcome::fail(
                            FailureKind::NoAnswer,
                            format!(
                                "{label} {rang}not answered within {}; cancelled",
                                short_duration(plan.answer_within)
                            ),
                        )
                    };
                if let Some(r) = ring {
                    outcome.observations.push(Observation::PhoneRing(r));
                }
                outcome.details.push(hang_up_detail(&hang_up));
                return outcome;
            }
            Some(Event::Provisional(r)) => {
                if matches!(r.status, 180 | 183) && ring.is_none() {
                    ring = Some(sent.elapsed());
                    ctx.begin("answer");
                    if plan.ring_only {
                        ctx.begin("hangup");
                        let hang_up = call.hang_up(HANG_UP_RESERVE).await;
                        ctx.end();
                        let mut outcome = Outcome::pass();
                        outcome
                            .observations
                            .extend(ring.map(Observation::PhoneRing));
                        outcome.details.push(format!(
                            "{label}: {} {} after {}",
                            r.status,
                            r.reason,
                            millis(sent.elapsed())
                        ));
                        outcome.details.push(hang_up_detail(&hang_up));
                        return outcome;
                    }
                }
            }
            Some(Event::Refused(r)) => {
                let challenge = matches!(r.status, 401 | 407) && !challenged;
                if let (true, Some((user, password))) = (challenge, &probe.credentials) {
                    challenged = true;
                    let credentials = Credentials { user, password };
                    let answer =
                        match uac::answer_challenge(&r, &credentials, "INVITE", &probe.target) {
                            Ok(a) => a,
                            Err(e) => {
                                return Outcome::fail(
                                    FailureKind::Auth,
                                    format!("cannot answer the challenge of {}: {e}", probe.label),
                                );
                            }
                        };
                    if let Err(e) = call
                        .invite(&probe.target, Some(answer), offer.clone())
                        .await
                    {
                        return probe.transport_failure(e);
                    }
                    sent = Instant::now();
                    continue;
                }
                ctx.end();
                return refused(probe, &label, &r, challenged, sent.elapsed());
            }
            Some(Event::Answered(r)) => break r,
        }
    };
    let answer = sent.elapsed();
    let mut observations: Vec<Observation> = ring.map(Observation::PhoneRing).into_iter().collect();
    observations.push(Observation::PhoneAnswer(answer));
    let mut details = vec![match ring {
        Some(r) => format!(
            "{label} rang after {}, answered after {}",
            millis(r),
            millis(answer)
        ),
        None => format!("{label} answered after {} without ringing", millis(answer)),
    }];
    if plan.ring_only {
        ctx.begin("hangup");
        let hang_up = call.hang_up(HANG_UP_RESERVE).await;
        ctx.end();
        details.push(hang_up_detail(&hang_up));
        return Outcome {
            observations,
            details,
            ..Outcome::pass()
        };
    }
    ctx.begin("listen");
    let media = sdp::parse_answer(&answered.body);
    let listen_until = (Instant::now() + plan.listen).min(stop);
    let listen_started = Instant::now();
    let mut meter = LevelMeter::default();
    let held = {
        let mut buf = vec![0u8; 2048];
        // Audio is taken from anyone on the bound port: behind a NAT it comes from an address
        // the SDP does not name. This arm never ends; the other does at `listen_until` or when
        // the far end hangs up, and then the receive loop is dropped with its borrow of `meter`.
        let receive = async {
            loop {
                if let Ok((n, _from)) = rtp.recv_from(&mut buf).await {
                    meter.add_packet(&buf[..n]);
                }
            }
        };
        tokio::select! {
            held = call.hold(listen_until) => held,
            () = receive => Ok(false),
        }
    };
    let listened = listen_started.elapsed();
    ctx.begin("hangup");
    let hang_up = call.hang_up(HANG_UP_RESERVE).await;
    ctx.end();
    drop(rtp);
    let level = meter.dbfs();
    observations.push(Observation::PhoneAudioLevel(level));
    let heard = format!(
        "{level:.1} dBFS over {} ({} RTP packets)",
        short_duration(listened),
        meter.packets
    );
    details.push(format!("heard {heard}"));
    match &held {
        Ok(true) => details.push("the far end hung up while we listened".to_string()),
        Ok(false) => details.push(hang_up_detail(&hang_up)),
        Err(e) => details.push(format!("the signalling broke while we listened: {e}")),
    }
    if plan.audio {
        let problem = match (&media, meter.packets, meter.other_packets) {
            (Err(e), 0, _) => Some(format!("{e}, and no audio arrived")),
            (Ok(m), 0, 0) if m.media.is_none() => {
                Some("the answer declined the audio stream; nothing arrived".to_string())
            }
            (_, 0, 0) => Some(format!(
                "no RTP audio arrived in {} of listening",
                short_duration(listened)
            )),
            (_, 0, other) => Some(format!(
                "{other} RTP packets arrived, none of them PCMU or PCMA audio"
            )),
            (_, _, _) if level < plan.min_level_dbfs => Some(format!(
                "the line was silent: {heard}, below {} dBFS",
                plan.min_level_dbfs
            )),
            _ => None,
        };
        if let Some(problem) = problem {
            return Outcome {
                observations,
                details,
                ..Outcome::fail(
                    FailureKind::SilentLine,
                    format!("{label} answered after {}; {problem}", millis(answer)),
                )
            };
        }
    }
    Outcome {
        observations,
        details,
        ..Outcome::pass()
    }
}

/// The outcome of a final refusal of the INVITE.
fn refused(
    probe: &PhoneProbe,
    label: &str,
    r: &Response,
    challenged: bool,
    after: Duration,
) -> Outcome {
    let answered = format!(
        "{label} answered {} {} after {}",
        r.status,
        r.reason,
        millis(after)
    );
    let (kind, message) = match r.status {
        401 | 407 => match (&probe.account, &probe.credentials, challenged) {
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
        486 | 600 => (FailureKind::Busy, "the line is busy".to_string()),
        404 | 484 => (
            FailureKind::NotFound,
            "the server does not know this number".to_string(),
        ),
        480 | 503 => (
            FailureKind::Unavailable,
            "the line is unavailable".to_string(),
        ),
        _ => (FailureKind::Rejected, "the call was refused".to_string()),
    };
    let mut outcome = Outcome::fail(kind, format!("{answered}: {message}"));
    outcome.details.push(answered);
    outcome
}

fn hang_up_detail(hang_up: &Result<HangUp, crate::sip::SipError>) -> String {
    match hang_up {
        Ok(HangUp::Nothing) => "nothing to hang up".to_string(),
        Ok(HangUp::Bye(Some(status))) => format!("hung up: BYE answered {status}"),
        Ok(HangUp::Bye(None)) => "hung up: BYE sent, no answer in time".to_string(),
        Ok(HangUp::Cancel(Some(status))) => format!("cancelled: the INVITE ended {status}"),
        Ok(HangUp::Cancel(None)) => "cancelled: CANCEL sent, no final answer in time".to_string(),
        Err(e) => format!("hanging up failed: {e}"),
    }
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}
