//! `deliver` and `auto_reply`: proving that what a check submitted arrived at the far end.
//!
//! A probe that submits something (a form, a mail) calls [`follow_up`] and returns the result in
//! its outcome. The runner awaits that second stage after the run has given back its concurrency
//! permits, so minutes of waiting for mail never block other checks. A delivery that misses its
//! deadline fails the run at once and is then watched for a while longer, so late and lost mail
//! can be told apart in metrics. A mailbox delivery that was not found leaves its token in the
//! mailbox's [`LateMail`], so the test mail is deleted whenever it does turn up.

use crate::mailbox::late::{Forgotten, LateMail};
use crate::mailbox::{self, Delivered, MailboxSpec, WaitError, Watcher, watch::WaitRequest};
use crate::outcome::{
    FailureKind, FollowUp, FollowUpResult, LateDelivery, Observation, Outcome, RunContext,
};
use crate::value::{Dur, Pattern};
use futures::FutureExt;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

mod targets;
pub use targets::HttpPollSpec;

/// `deliver:` — where the submitted token must show up, and by when. Exactly one target of
/// `mailbox`, `webhook`, `http_poll` and `call` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverSpec {
    /// A mailbox declared under `mailboxes:`.
    pub mailbox: Option<String>,
    /// A hook declared under `hooks:`: the shop's system posts the token to `/hooks/NAME`.
    pub webhook: Option<String>,
    /// An API queried until it lists the token.
    pub http_poll: Option<HttpPollSpec>,
    /// A phone account under `phones:` with `register: true`: the shop's call to it is the proof.
    pub call: Option<String>,
    /// For `call`: answer the call (default true; 200, then BYE after a second) or reject it.
    #[serde(default = "default_true")]
    pub answer: bool,
    /// For `call` with `answer: false`: 486 (Busy Here, the default) or 603 (Decline).
    pub reject: Option<u16>,
    /// For `call` on a check with `active_hours`: what to expect outside them (default `call`,
    /// the call must come anyway; `no_call`: the shop calls back the next day, so a run passes
    /// when no call comes within `within` and fails if one does).
    #[serde(default)]
    pub outside_hours: OutsideHoursCall,
    /// Set for a run outside the check's active hours with `outside_hours: no_call`.
    #[serde(skip)]
    pub expect_no_call: bool,
    /// Deadline, counted from the submit (default 5m).
    #[serde(default = "default_within")]
    pub within: Dur,
    /// A regex the decoded message must match as well (e.g. the form's subject line).
    #[serde(rename = "match")]
    pub pattern: Option<Pattern>,
    /// Delete the test message once found (default true), so support staff never see it.
    #[serde(default = "default_true")]
    pub cleanup: bool,
    /// After a missed deadline, keep watching this long to tell late mail from lost mail
    /// (default: as long as `within`).
    pub late_window: Option<Dur>,
}

/// `deliver: { outside_hours: … }` for `call`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutsideHoursCall {
    /// The call must come outside active hours too.
    #[default]
    Call,
    /// No call may come outside active hours.
    NoCall,
}

impl DeliverSpec {
    /// The spec for a run outside (`outside`) or inside the check's active hours.
    pub fn for_hours(&self, outside: bool) -> DeliverSpec {
        let mut spec = self.clone();
        spec.expect_no_call = outside
            && self.call.is_some()
            && match self.outside_hours {
                OutsideHoursCall::NoCall => true,
                OutsideHoursCall::Call => false,
            };
        spec
    }
}

/// `auto_reply:` — the shop's automatic acknowledgement must reach the sender.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AutoReplySpec {
    /// The sender's mailbox, declared under `mailboxes:`.
    pub mailbox: String,
    /// Deadline, counted from the submit (default 5m).
    #[serde(default = "default_within")]
    pub within: Dur,
    /// A regex the acknowledgement must match (e.g. `(?i)within 2 hours|в течение 2 часов`).
    pub body: Option<Pattern>,
    /// Delete the acknowledgement once found (default true).
    #[serde(default = "default_true")]
    pub cleanup: bool,
}

fn default_within() -> Dur {
    Dur::secs(300)
}
fn default_true() -> bool {
    true
}

/// Checks that referenced mailboxes exist and deadlines are sane.
pub fn validate(
    deliver: Option<&DeliverSpec>,
    auto_reply: Option<&AutoReplySpec>,
    mailboxes: &BTreeMap<String, MailboxSpec>,
    hooks: &BTreeMap<String, crate::hooks::HookSpec>,
) -> Result<(), String> {
    let known = || {
        if mailboxes.is_empty() {
            "none are declared under `mailboxes:`".to_string()
        } else {
            format!(
                "declared: {}",
                mailboxes.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        }
    };
    if let Some(d) = deliver {
        match d.target() {
            Err(e) => return Err(e),
            Ok(Target::Mailbox(name)) if !mailboxes.contains_key(name) => {
                return Err(format!("deliver: unknown mailbox `{name}` ({})", known()));
            }
            Ok(Target::Webhook(name)) if !hooks.contains_key(name) => {
                let declared = if hooks.is_empty() {
                    "none are declared under `hooks:`".to_string()
                } else {
                    format!(
                        "declared: {}",
                        hooks.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                };
                return Err(format!("deliver: unknown webhook `{name}` ({declared})"));
            }
            Ok(Target::HttpPoll(poll)) => poll.validate()?,
            Ok(Target::Call(_)) => {
                if let Some(code) = d.reject
                    && !matches!(code, 486 | 603)
                {
                    return Err(format!("deliver: reject is {code}; use 486 or 603"));
                }
                if d.answer && d.reject.is_some() {
                    return Err("deliver: reject applies with answer: false".into());
                }
            }
            Ok(_) => {}
        }
        if d.call.is_none()
            && (!d.answer || d.reject.is_some() || d.outside_hours != OutsideHoursCall::Call)
        {
            return Err("deliver: answer, reject and outside_hours apply to call".into());
        }
        if d.mailbox.is_none() && d.pattern.is_some() {
            return Err(
                "deliver: match applies to mailboxes; for http_poll use http_poll.match".into(),
            );
        }
        if d.within.get().is_zero() {
            return Err("deliver: within must be longer than 0s".into());
        }
    }
    if let Some(a) = auto_reply {
        if !mailboxes.contains_key(&a.mailbox) {
            return Err(format!(
                "auto_reply: unknown mailbox `{}` ({})",
                a.mailbox,
                known()
            ));
        }
        if a.within.get().is_zero() {
            return Err("auto_reply: within must be longer than 0s".into());
        }
    }
    Ok(())
}

/// The one target a `deliver` block names.
pub enum Target<'a> {
    /// `mailbox: NAME`
    Mailbox(&'a str),
    /// `webhook: NAME`
    Webhook(&'a str),
    /// `http_poll: {…}`
    HttpPoll(&'a HttpPollSpec),
    /// `call: PHONE`
    Call(&'a str),
}

impl DeliverSpec {
    /// The target, or why there is not exactly one.
    pub fn target(&self) -> Result<Target<'_>, String> {
        match (&self.mailbox, &self.webhook, &self.http_poll, &self.call) {
            (Some(m), None, None, None) => Ok(Target::Mailbox(m)),
            (None, Some(w), None, None) => Ok(Target::Webhook(w)),
            (None, None, Some(p), None) => Ok(Target::HttpPoll(p)),
            (None, None, None, Some(c)) => Ok(Target::Call(c)),
            (None, None, None, None) => Err(
                "deliver: name where the token must arrive: mailbox: NAME, webhook: NAME, http_poll: { url: … } or call: PHONE".into(),
            ),
            _ => Err("deliver: set only one of mailbox, webhook, http_poll and call".into()),
        }
    }
}

/// Every declared delivery target, built once per loaded config: mailboxes with their watchers,
/// the daemon's webhook registry and its registered phone lines.
#[derive(Clone, Default)]
pub struct Mailboxes {
    watchers: HashMap<String, (Watcher, Option<f64>)>,
    /// Own address (lower case) → mailbox name: where bounces of mail sent from it arrive.
    senders: HashMap<String, String>,
    hooks: Arc<crate::hooks::Hooks>,
    /// The daemon's registered lines, where `deliver: { call: … }` waits.
    lines: Arc<crate::sip::line::Lines>,
    /// Tokens of runs that gave up on their mail, shared by every watcher.
    late: Arc<LateMail>,
}

impl Mailboxes {
    /// Builds a watcher for every declaration. Errors name the mailbox.
    pub fn build(specs: &BTreeMap<String, MailboxSpec>) -> Result<Self, Vec<String>> {
        Self::build_with(specs, Arc::new(LateMail::new()))
    }

    /// [`Mailboxes::build`], the watchers deleting late test mail remembered in `late` (the
    /// daemon's, which outlives reloads and restarts).
    pub fn build_with(
        specs: &BTreeMap<String, MailboxSpec>,
        late: Arc<LateMail>,
    ) -> Result<Self, Vec<String>> {
        let mut watchers = HashMap::new();
        let mut senders = HashMap::new();
        let mut errors = Vec::new();
        for (name, spec) in specs {
            if let Some(address) = spec.own_address() {
                // Two declarations of one address (say, IMAP and its Maildir): the first name wins.
                senders.entry(address).or_insert_with(|| name.clone());
            }
            match mailbox::build(name, spec) {
                Ok(store) => {
                    watchers.insert(
                        name.clone(),
                        (
                            Watcher::with_late_mail(name, store, spec, late.clone()),
                            spec.quota_max.map(|r| r.0),
                        ),
                    );
                }
                Err(e) => errors.push(format!("mailbox `{name}`: {e}")),
            }
        }
        if errors.is_empty() {
            Ok(Mailboxes {
                watchers,
                senders,
                hooks: Arc::default(),
                lines: Arc::default(),
                late,
            })
        } else {
            Err(errors)
        }
    }

    /// Uses `hooks` for `deliver: { webhook: … }`: the registry the web server feeds.
    pub fn with_hooks(mut self, hooks: Arc<crate::hooks::Hooks>) -> Self {
        self.hooks = hooks;
        self
    }

    /// Uses `lines` for `deliver: { call: … }`: the lines the daemon registers.
    pub fn with_lines(mut self, lines: Arc<crate::sip::line::Lines>) -> Self {
        self.lines = lines;
        self
    }

    /// The declared mailboxes' names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.watchers.keys().map(String::as_str)
    }

    /// Looks once at every mailbox that has late test mail to delete (see [`LateMail`]);
    /// returns how many messages were deleted.
    pub async fn sweep_late(&self) -> usize {
        let mut deleted = 0;
        for name in self.late.mailboxes() {
            if let Some((watcher, _)) = self.watchers.get(&name) {
                deleted += watcher.sweep().await;
            }
        }
        deleted
    }

    fn get(&self, name: &str) -> Result<&(Watcher, Option<f64>), String> {
        self.watchers
            .get(name)
            .ok_or_else(|| format!("unknown mailbox `{name}`"))
    }

    /// Whether `address` (`user@domain`, any case) is a declared mailbox's own address.
    pub fn is_declared_address(&self, address: &str) -> bool {
        self.senders
            .contains_key(&address.trim().to_ascii_lowercase())
    }

    /// The watcher of the mailbox whose own address is `address`, if one is declared.
    fn sender(&self, address: &str) -> Option<Watcher> {
        let name = self.senders.get(&address.trim().to_ascii_lowercase())?;
        Some(self.get(name).ok()?.0.clone())
    }

    /// Checks at build time that a probe's references resolve.
    pub fn check(
        &self,
        deliver: Option<&DeliverSpec>,
        auto_reply: Option<&AutoReplySpec>,
    ) -> Result<(), String> {
        if let Some(d) = deliver
            && let Target::Mailbox(name) = d.target()?
        {
            self.get(name)?;
        }
        if let Some(a) = auto_reply {
            self.get(&a.mailbox)?;
        }
        Ok(())
    }
}

/// The stage that waits for `deliver` (and `auto_reply`) after a submit at `submitted_at`.
///
/// `sender` is the address the submitted mail comes from (a mail check's `from`, a form's e-mail
/// field). When it is a declared mailbox, a bounce of the mail arriving there fails the run at
/// once instead of after `within`.
pub fn follow_up(
    ctx: &RunContext,
    submitted_at: SystemTime,
    deliver: Option<&DeliverSpec>,
    auto_reply: Option<&AutoReplySpec>,
    mailboxes: &Mailboxes,
    sender: Option<&str>,
) -> Option<FollowUp> {
    if deliver.is_none() && auto_reply.is_none() {
        return None;
    }
    let token = ctx.token.clone();
    let ctx = ctx.clone();
    let main = deliver.and_then(|d| {
        Some(match d.target().ok()? {
            Target::Mailbox(name) => {
                let (watcher, quota_max) = mailboxes.get(name).ok()?.clone();
                let bounces = sender.and_then(|a| mailboxes.sender(a));
                MainWait::Mailbox(d.clone(), watcher, quota_max, bounces)
            }
            Target::Webhook(name) => {
                MainWait::Webhook(d.clone(), mailboxes.hooks.clone(), name.to_string())
            }
            Target::HttpPoll(_) => MainWait::HttpPoll(d.clone()),
            Target::Call(name) => {
                MainWait::Call(d.clone(), mailboxes.lines.clone(), name.to_string())
            }
        })
    });
    let reply = auto_reply.and_then(|a| {
        let (watcher, _) = mailboxes.get(&a.mailbox).ok()?.clone();
        Some((a.clone(), watcher))
    });
    let limit = deliver
        .map(|d| d.within.get())
        .into_iter()
        .chain(auto_reply.map(|a| a.within.get()))
        .max()
        .unwrap_or_default()
        + Duration::from_secs(60);
    let stage = async move {
        let started = Instant::now();
        let main_wait = async {
            let deadline = |spec: &DeliverSpec| started + spec.within.get();
            let result = match main? {
                MainWait::Mailbox(spec, watcher, quota_max, bounces) => {
                    let sent = Sent {
                        token: &token,
                        check: &ctx.check,
                        at: submitted_at,
                    };
                    mailbox_stage(spec, (watcher, bounces), quota_max, sent, started).await
                }
                MainWait::Webhook(spec, hooks, name) => {
                    let until = deadline(&spec);
                    targets::webhook_stage(spec, hooks, name, token.clone(), submitted_at, until)
                        .await
                }
                MainWait::HttpPoll(spec) => {
                    let until = deadline(&spec);
                    targets::poll_stage(spec, &ctx, submitted_at, until).await
                }
                MainWait::Call(spec, lines, phone) => {
                    let until = deadline(&spec);
                    targets::call_stage(spec, &lines, &phone, submitted_at, until).await
                }
            };
            Some(result)
        };
        let reply_wait = async {
            let (spec, watcher) = reply?;
            let request = WaitRequest {
                token: token.clone(),
                since: submitted_at,
                pattern: spec.body.clone(),
                cleanup: spec.cleanup,
            };
            let result = watcher.wait(request, started + spec.within.get()).await;
            Some((spec, watcher, result, started.elapsed()))
        };
        let (main_result, reply_result) = futures::join!(
            async {
                let r = main_wait.await;
                (r, started.elapsed())
            },
            reply_wait
        );
        let mut outcome = Outcome::default();
        let mut late = None;
        if let (Some(main), took) = main_result {
            ctx.record("deliver", took);
            outcome = main.outcome;
            late = main.late;
        }
        if let Some((spec, watcher, result, took)) = reply_result {
            ctx.record("auto_reply", took);
            // An auto-reply not found may still come (the shop's mail was deferred): remember
            // its token so that the sender's mailbox is cleaned when it does.
            if result.is_err() && spec.cleanup {
                let late = watcher.late_mail();
                late.remember(watcher.name(), &token, &ctx.check, submitted_at);
            }
            match result {
                Ok(found) => {
                    let latency = found
                        .observed_at
                        .duration_since(submitted_at)
                        .unwrap_or_default();
                    outcome
                        .observations
                        .push(Observation::AutoReplyLatency(latency));
                    outcome.details.push(format!(
                        "auto-reply \"{}\" reached {} after {}",
                        found.subject,
                        watcher.name(),
                        crate::value::short_duration(latency)
                    ));
                    note_cleanup(&mut outcome, &found);
                }
                Err(WaitError::NotFound) => outcome.fail_with(
                    FailureKind::AutoReply,
                    match &spec.body {
                        Some(p) => format!(
                            "no auto-reply matching /{}/ within {} (mailbox {})",
                            p.as_str(),
                            spec.within,
                            watcher.name()
                        ),
                        None => format!(
                            "no auto-reply within {} (mailbox {})",
                            spec.within,
                            watcher.name()
                        ),
                    },
                ),
                Err(WaitError::Mailbox(e)) => outcome.fail_with(e.failure_kind(), e.to_string()),
            }
        }
        FollowUpResult { outcome, late }
    };
    Some(FollowUp {
        limit,
        stage: stage.boxed(),
    })
}

/// The `deliver` wait, resolved to its target when the stage is made.
enum MainWait {
    /// The target mailbox, its `quota_max`, and the sender's mailbox where bounces arrive.
    Mailbox(DeliverSpec, Watcher, Option<f64>, Option<Watcher>),
    Webhook(DeliverSpec, Arc<crate::hooks::Hooks>, String),
    HttpPoll(DeliverSpec),
    /// The daemon's lines and the registered account a call must reach.
    Call(DeliverSpec, Arc<crate::sip::line::Lines>, String),
}

/// How the delivery wait ended: an answer from the target mailbox, or a bounce in the sender's.
enum Waited {
    Target(Result<Delivered, WaitError>),
    Bounced(Delivered, Watcher),
}

/// Waits for the message in the target mailbox and, when the sender's mailbox is declared, for
/// a bounce of it there; whichever comes first decides.
async fn wait_or_bounce(
    watcher: &Watcher,
    bounces: Option<Watcher>,
    request: &WaitRequest,
    deadline: Instant,
) -> Waited {
    let delivered = watcher.wait(request.clone(), deadline);
    let Some(sender) = bounces else {
        return Waited::Target(delivered.await);
    };
    let bounce = WaitRequest {
        pattern: None,
        ..request.clone()
    };
    let bounced = sender.wait_bounce(bounce, deadline);
    tokio::pin!(delivered, bounced);
    // Both waits share the deadline. The delivery is preferred when both are ready; the loser's
    // future is dropped, which ends its wait in the watcher.
    tokio::select! {
        biased;
        result = &mut delivered => Waited::Target(result),
        result = &mut bounced => match result {
            Ok(found) => Waited::Bounced(found, sender.clone()),
            Err(e) => {
                // No bounce seen (or the sender's mailbox is unreadable): the delivery decides.
                if let WaitError::Mailbox(e) = &e {
                    tracing::warn!(mailbox = %sender.name(), error = %e, "cannot look for bounces");
                }
                Waited::Target(delivered.await)
            }
        },
    }
}

/// What a run sent: its token, its check, when.
struct Sent<'a> {
    token: &'a str,
    check: &'a str,
    at: SystemTime,
}

async fn mailbox_stage(
    spec: DeliverSpec,
    (watcher, bounces): (Watcher, Option<Watcher>),
    quota_max: Option<f64>,
    sent: Sent<'_>,
    started: Instant,
) -> FollowUpResult {
    let submitted_at = sent.at;
    let request = WaitRequest {
        token: sent.token.to_string(),
        since: submitted_at,
        pattern: spec.pattern.clone(),
        cleanup: spec.cleanup,
    };
    let deadline = started + spec.within.get();
    let sender = bounces.as_ref().map(|b| b.name().to_string());
    let waited = wait_or_bounce(&watcher, bounces, &request, deadline).await;
    let mut outcome = Outcome::default();
    let mut late = None;
    let result = match waited {
        Waited::Target(result) => result,
        Waited::Bounced(found, sender) => {
            // The bounce may come before the target mailbox was ever looked at; one look (bounded
            // by the deadline) makes its quota known, so a full mailbox is named as such.
            if watcher.last_quota().is_none() {
                let until = deadline.min(Instant::now() + Duration::from_secs(10));
                let _ = tokio::time::timeout_at(until.into(), watcher.sweep()).await;
            }
            judge_bounce(&mut outcome, &watcher, &sender, &found);
            // A bounced message will not arrive late: it is lost.
            let lost = async { LateDelivery::Bounced }.boxed();
            return FollowUpResult {
                outcome,
                late: Some(lost),
            };
        }
    };
    // Test mail not found now may still arrive (a deferred queue flushed after an outage): its
    // token is remembered so that the mail is deleted whenever it turns up.
    if result.is_err() && spec.cleanup {
        let late = watcher.late_mail();
        late.remember(watcher.name(), sent.token, sent.check, submitted_at);
        // Its bounce, or an auto-reply to it, may turn up in the sender's declared mailbox.
        if let Some(sender) = &sender {
            late.remember(sender, sent.token, sent.check, submitted_at);
        }
    }
    match result {
        Ok(found) => judge_delivery(&mut outcome, &watcher, quota_max, &found, submitted_at),
        Err(WaitError::NotFound) => {
            // A full mailbox is the likely cause; say so rather than only "not delivered".
            let full = watcher
                .last_quota()
                .map(|q| q.ratio())
                .filter(|r| quota_max.is_some_and(|max| *r > max));
            match full {
                Some(ratio) => outcome.fail_with(
                    FailureKind::Quota,
                    format!(
                        "not delivered within {}: mailbox {} is {:.1}% full (quota_max {:.0}%)",
                        spec.within,
                        watcher.name(),
                        ratio * 100.0,
                        quota_max.unwrap_or_default() * 100.0
                    ),
                ),
                None => outcome.fail_with(
                    FailureKind::NotDelivered,
                    format!(
                        "not delivered within {} (mailbox {}){}",
                        spec.within,
                        watcher.name(),
                        near_full(&watcher)
                            .map(|full| format!("; {full}"))
                            .unwrap_or_default()
                    ),
                ),
            }
            let window = late_window(&spec);
            late = Some(late_watch(submitted_at, async move {
                let found = watcher.wait(request.clone(), Instant::now() + window).await;
                // Found and deleted (cleanup is on, or the token was not remembered): nothing
                // is left for a later look.
                if let Ok(Delivered {
                    cleanup: Some(Ok(())),
                    ..
                }) = &found
                {
                    let late = watcher.late_mail();
                    late.forget(watcher.name(), &request.token, Forgotten::Found);
                }
                found.ok().map(|f| f.observed_at)
            }));
        }
        Err(WaitError::Mailbox(e)) => {
            outcome.fail_with(e.failure_kind(), e.to_string());
        }
    }
    FollowUpResult { outcome, late }
}

fn judge_delivery(
    outcome: &mut Outcome,
    watcher: &Watcher,
    quota_max: Option<f64>,
    found: &Delivered,
    submitted_at: SystemTime,
) {
    let latency = found
        .observed_at
        .duration_since(submitted_at)
        .unwrap_or_default();
    let server = found
        .arrived
        .and_then(|a| a.duration_since(submitted_at).ok())
        .map(|d| {
            format!(
                "; server stored it after {}",
                crate::value::short_duration(d)
            )
        })
        .unwrap_or_default();
    if found.spam {
        outcome.fail_with(
            FailureKind::Spam,
            format!(
                "delivered to spam (folder {} of mailbox {}) after {}",
                found.folder,
                watcher.name(),
                crate::value::short_duration(latency)
            ),
        );
    } else {
        outcome
            .observations
            .push(Observation::DeliveryLatency(latency));
    }
    outcome.details.push(format!(
        "delivered to {}/{} after {}{server}",
        watcher.name(),
        found.folder,
        crate::value::short_duration(latency)
    ));
    note_cleanup(outcome, found);
    if let Some(q) = found.quota {
        let ratio = q.ratio();
        outcome.observations.push(Observation::MailboxQuota {
            mailbox: watcher.name().to_string(),
            ratio,
        });
        outcome.details.push(format!(
            "mailbox {} quota: {:.1}% of {} bytes used",
            watcher.name(),
            ratio * 100.0,
            q.limit
        ));
        if let Some(max) = quota_max
            && ratio > max
        {
            outcome.fail_with(
                FailureKind::Quota,
                format!(
                    "mailbox {} is {:.1}% full (quota_max {:.0}%)",
                    watcher.name(),
                    ratio * 100.0,
                    max * 100.0
                ),
            );
        }
    }
}

/// Quota used from which a failed delivery names it, even without `quota_max`: a mailbox this
/// full is the likely reason mail does not arrive.
const NEAR_FULL: f64 = 0.95;

/// `mailbox support is 100% full (10.0 MiB of 10.0 MiB)` when the mailbox's quota is known and
/// at least [`NEAR_FULL`] used.
fn near_full(watcher: &Watcher) -> Option<String> {
    let quota = watcher.last_quota().filter(|q| q.ratio() >= NEAR_FULL)?;
    Some(format!(
        "mailbox {} is {:.0}% full ({} of {})",
        watcher.name(),
        quota.ratio() * 100.0,
        binary_size(quota.used),
        binary_size(quota.limit)
    ))
}

/// `10.0 MiB`, `512.0 KiB`, `2.0 GiB`: sizes as mail providers state quotas.
fn binary_size(bytes: u64) -> String {
    const UNITS: [(&str, f64); 3] = [
        ("GiB", (1u64 << 30) as f64),
        ("MiB", (1u64 << 20) as f64),
        ("KiB", 1024.0),
    ];
    let value = bytes as f64;
    match UNITS.iter().find(|(_, size)| value >= *size) {
        Some((unit, size)) => format!("{:.1} {unit}", value / size),
        None => format!("{bytes} B"),
    }
}

/// A bounce of the run's message reached the sender's mailbox: the run fails with what it says.
fn judge_bounce(outcome: &mut Outcome, target: &Watcher, sender: &Watcher, found: &Delivered) {
    let dsn = found.bounce.clone().unwrap_or_default();
    let mut message = format!("bounced: {}", dsn.summary());
    if let Some(full) = near_full(target) {
        message.push_str(&format!("; {full}"));
    }
    outcome.fail_with(FailureKind::Bounced, message);
    let recipient = dsn
        .recipient
        .map(|r| format!(" to {r}"))
        .unwrap_or_default();
    outcome.details.push(format!(
        "bounce of the message{recipient} found in {}/{}: \"{}\"",
        sender.name(),
        found.folder,
        found.subject
    ));
    match &found.cleanup {
        Some(Ok(())) => outcome.details.push("bounce deleted".into()),
        Some(Err(e)) => outcome
            .details
            .push(format!("could not delete the bounce: {e}")),
        None => {}
    }
}

fn note_cleanup(outcome: &mut Outcome, found: &Delivered) {
    match &found.cleanup {
        Some(Ok(())) => outcome.details.push("test message deleted".into()),
        Some(Err(e)) => outcome
            .details
            .push(format!("could not delete the test message: {e}")),
        None => {}
    }
}

/// How long a missed delivery is still watched for: `late_window`, or as long as `within`.
pub(crate) fn late_window(spec: &DeliverSpec) -> Duration {
    spec.late_window.unwrap_or(spec.within).get()
}

/// The late watch of a missed delivery: `arrival` resolves to when the token was seen, or `None`
/// when the late window passed without it.
pub(crate) fn late_watch(
    submitted_at: SystemTime,
    arrival: impl Future<Output = Option<SystemTime>> + Send + 'static,
) -> futures::future::BoxFuture<'static, LateDelivery> {
    async move {
        match arrival.await {
            Some(at) => LateDelivery::Arrived(at.duration_since(submitted_at).unwrap_or_default()),
            None => LateDelivery::Lost,
        }
    }
    .boxed()
}

#[cfg(test)]
mod tests {
    #[test]
    fn quota_sizes_read_as_providers_state_them() {
        assert_eq!(super::binary_size(10 << 20), "10.0 MiB");
        assert_eq!(super::binary_size(995_600), "972.3 KiB");
        assert_eq!(super::binary_size(3 << 30), "3.0 GiB");
        assert_eq!(super::binary_size(512), "512 B");
    }
}
