//! The webhook receiver registry: `POST /hooks/NAME` proves that a shop's CRM or telephony system
//! passed a run's token on to us.
//!
//! Hooks are declared once under top-level `hooks:`, each with a secret that authenticates the
//! sender: either the raw secret in a header (`signature: header`), a hex HMAC-SHA256 of the
//! body keyed with the secret (`signature: hmac-sha256`, the default, as GitHub and most CRMs
//! send it), or the secret as the last path segment, `POST /hooks/NAME/SECRET`
//! (`signature: url`), for the many CRMs and telephony systems that let an integrator set a URL
//! and nothing else. A request that fails authentication never counts as a delivery.
//!
//! Refused requests to a declared hook are remembered for a while (bounded), so a run that waited
//! in vain can say that its CRM did call but was turned away, and why.
//!
//! One [`Hooks`] lives as long as the process (the daemon holds it): the web server feeds it and
//! `deliver: { webhook: NAME }` waits on it, and a reload only swaps the declarations, so a run
//! waiting across a reload is still answered. Like the mailbox watcher, tokens seen recently are
//! remembered (bounded in count and age), because a fast CRM may call back before the run that
//! submitted the form has started waiting.

use crate::value::Secret;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::oneshot;

/// Largest body a hook accepts; larger requests are answered 413.
pub const MAX_BODY: usize = 64 * 1024;
/// Tokens are remembered this long after they arrived.
const REMEMBER_FOR: Duration = Duration::from_secs(3600);
/// At most this many remembered tokens, oldest dropped first, so a flood cannot grow memory.
const REMEMBER_MAX: usize = 10_000;
/// Deliveries stamped slightly before the submit still count (the sender's clock is not ours,
/// and a hook can race the form's answer).
const CLOCK_SKEW: Duration = Duration::from_secs(5);
/// Token bucket per hook: sustained requests per second, and the burst allowed on top.
const RATE_PER_SEC: f64 = 10.0;
const BURST: f64 = 50.0;

/// How a hook's sender proves it knows the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Signature {
    /// The header carries hex HMAC-SHA256(secret, body), optionally prefixed `sha256=`.
    #[default]
    #[serde(rename = "hmac-sha256")]
    HmacSha256,
    /// The header carries the secret itself.
    #[serde(rename = "header")]
    Header,
    /// The last path segment carries the secret: `POST /hooks/NAME/SECRET`.
    #[serde(rename = "url")]
    Url,
}

/// A secret in a URL must be at least this long: it travels in every request line, so it must
/// not be guessable, and the log redactor must recognise it.
pub const URL_SECRET_MIN: usize = 16;

/// One entry under `hooks:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSpec {
    /// The shared secret; use `${ENV}` or `${file:…}`, it is never shown.
    pub secret: Secret,
    /// `hmac-sha256` (default), `header` or `url`.
    #[serde(default)]
    pub signature: Signature,
    /// The header that carries the signature or secret (default `X-Signature`).
    #[serde(default = "default_header")]
    pub header: String,
}

fn default_header() -> String {
    "X-Signature".into()
}

/// Checks a declaration at load time.
pub fn validate(spec: &HookSpec) -> Result<(), String> {
    if spec.secret.expose().is_empty() {
        return Err("secret is empty; set it, e.g. secret: \"${CRM_HOOK_SECRET}\"".into());
    }
    http::HeaderName::from_bytes(spec.header.as_bytes())
        .map_err(|_| format!("header `{}` is not a valid header name", spec.header))?;
    if spec.signature == Signature::Url {
        // Only unreserved characters: the secret then reads the same percent-encoded or not,
        // so the sender's URL, our route and the log redactor all agree on it.
        let secret = spec.secret.expose();
        let unreserved = secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        if !unreserved || secret.chars().count() < URL_SECRET_MIN {
            return Err(format!(
                "signature: url needs a secret of at least {URL_SECRET_MIN} letters, digits, `-`, `.`, `_` or `~` (it becomes the URL's last segment); make one with `openssl rand -hex 16`"
            ));
        }
    }
    Ok(())
}

/// What became of one request to a hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Receipt {
    /// No hook of that name is declared (404).
    Unknown,
    /// The hook's rate limit was exceeded (429).
    RateLimited,
    /// The signature header is missing or wrong (401); nothing was recorded.
    BadSignature,
    /// Only checks run by other instances of the fleet wait on this hook (421); the text says
    /// which check and shard/location, so whoever routes the CRM's webhooks can fix the route.
    OtherShard(String),
    /// Accepted; this many tokens were recorded.
    Accepted(usize),
}

impl Receipt {
    /// Why the request was refused, as the bounded `reason` label; `None` when accepted.
    pub fn rejection(&self) -> Option<Rejection> {
        match self {
            Receipt::Unknown => Some(Rejection::UnknownHook),
            Receipt::RateLimited => Some(Rejection::RateLimited),
            Receipt::BadSignature => Some(Rejection::BadSignature),
            Receipt::OtherShard(_) => Some(Rejection::OtherShard),
            Receipt::Accepted(_) => None,
        }
    }
}

/// Why a webhook request was refused: the closed set behind
/// `supportwatch_webhook_rejected_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rejection {
    /// No hook of that name.
    UnknownHook,
    /// Missing or wrong signature.
    BadSignature,
    /// A signed request over the hook's rate limit.
    RateLimited,
    /// The body was larger than [`MAX_BODY`].
    TooLarge,
    /// The body did not arrive in time.
    SlowBody,
    /// The hook belongs to checks another instance of the fleet runs.
    OtherShard,
}

/// Refusals remembered per hook, newest last, so the list stays bounded under a flood.
const REFUSALS_KEPT: usize = 32;

/// One refused request to a declared hook: when, and why in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// When the request was refused.
    pub at: SystemTime,
    /// Why, for a person: "bad signature", "wrong secret in the URL", … Never the secret or
    /// anything the sender presented.
    pub why: &'static str,
}

impl Rejection {
    /// Every reason, for initialising the counter's series.
    pub const ALL: [Rejection; 6] = [
        Rejection::UnknownHook,
        Rejection::BadSignature,
        Rejection::RateLimited,
        Rejection::TooLarge,
        Rejection::SlowBody,
        Rejection::OtherShard,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::UnknownHook => "unknown_hook",
            Rejection::BadSignature => "bad_signature",
            Rejection::RateLimited => "rate_limited",
            Rejection::TooLarge => "too_large",
            Rejection::SlowBody => "slow_body",
            Rejection::OtherShard => "other_shard",
        }
    }
}

/// How often refused requests are logged: one line per hook and reason per interval, with the
/// count, so a flood of forgeries cannot flood the log.
pub const REJECTION_LOG_EVERY: Duration = Duration::from_secs(60);

/// Counts refused requests and says when a summary line is due.
#[derive(Default)]
pub struct RejectionLog {
    pending: Mutex<HashMap<(String, Rejection), Pending>>,
}

/// Per (hook, or "" for unknown names; reason): refused since the last line, and when that line
/// was written.
type Pending = (u64, Option<Instant>);

impl RejectionLog {
    /// Counts one refusal; returns the count to log when a line is due (the first refusal at
    /// once, then at most one per [`REJECTION_LOG_EVERY`]). Unknown hook names are pooled, as
    /// their names come from whoever sends.
    pub fn note(&self, hook: &str, reason: Rejection, now: Instant) -> Option<u64> {
        let hook = if reason == Rejection::UnknownHook {
            ""
        } else {
            hook
        };
        // A poisoned lock only means a panic elsewhere mid-update; the counts are still usable.
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() > 1024 {
            // Bounded: names are declared hooks, but be safe against churn over reloads.
            pending.clear();
        }
        let entry = pending
            .entry((hook.to_string(), reason))
            .or_insert((0, None));
        entry.0 += 1;
        let due = entry
            .1
            .is_none_or(|last| now.saturating_duration_since(last) >= REJECTION_LOG_EVERY);
        if !due {
            return None;
        }
        let count = entry.0;
        *entry = (0, Some(now));
        Some(count)
    }
}

/// The registry: declared hooks, tokens recently seen, and runs waiting for tokens.
#[derive(Default)]
pub struct Hooks {
    state: Mutex<State>,
    /// Whether a web server feeds this registry (`supportwatch check` runs without one).
    served: AtomicBool,
}

#[derive(Default)]
struct State {
    declared: HashMap<String, Declared>,
    /// Hooks only other instances' checks wait on → who runs those checks (see
    /// [`Hooks::set_elsewhere`]).
    elsewhere: BTreeMap<String, String>,
    /// (hook, token) → when it arrived.
    seen: HashMap<(String, String), SystemTime>,
    /// Arrival order, for forgetting the oldest first.
    order: VecDeque<(Instant, (String, String))>,
    waiters: Vec<Waiter>,
    /// hook → its latest refused requests, oldest first.
    refusals: HashMap<String, VecDeque<Refusal>>,
}

struct Declared {
    spec: HookSpec,
    bucket: Bucket,
}

struct Waiter {
    hook: String,
    token: String,
    since: SystemTime,
    reply: oneshot::Sender<SystemTime>,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full() -> Self {
        Bucket {
            tokens: BURST,
            last: Instant::now(),
        }
    }
    fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * RATE_PER_SEC;
        self.tokens = (self.tokens + refill).min(BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Hooks {
    /// Replaces the declarations (at start and on every accepted reload). Rate-limit state of
    /// hooks that stay declared is kept, so a reload does not refill their buckets.
    pub fn configure(&self, specs: &BTreeMap<String, HookSpec>) {
        let mut state = self.lock();
        // Refusals of hooks no longer declared would never be asked for again.
        state.refusals.retain(|name, _| specs.contains_key(name));
        let mut old = std::mem::take(&mut state.declared);
        for (name, spec) in specs {
            let bucket = old.remove(name).map_or_else(Bucket::full, |d| d.bucket);
            state.declared.insert(
                name.clone(),
                Declared {
                    spec: spec.clone(),
                    bucket,
                },
            );
        }
    }

    /// Names the hooks that only checks of other fleet instances wait on (`run --shard`,
    /// `--location`), each with who runs them: requests to them are answered 421 with that text
    /// instead of being recorded where no run waits.
    pub fn set_elsewhere(&self, elsewhere: BTreeMap<String, String>) {
        self.lock().elsewhere = elsewhere;
    }

    /// Handles one request to hook `name`: authentication, rate limit, then every token in the
    /// body is recorded and waiting runs are answered. `url_secret` is the path segment after
    /// the name (`POST /hooks/NAME/SECRET`), if the request had one.
    pub fn receive(
        &self,
        name: &str,
        url_secret: Option<&str>,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Receipt {
        let now = Instant::now();
        let mut state = self.lock();
        if let Some(owner) = state.elsewhere.get(name) {
            return Receipt::OtherShard(format!(
                "hook {name} is served by the instance that runs {owner}; route it there\n"
            ));
        }
        let Some(hook) = state.declared.get_mut(name) else {
            return Receipt::Unknown;
        };
        // The signature first: a forged request must never spend the budget of signed ones,
        // or a flood of forgeries would make every genuine delivery answer 429. Checking costs
        // one HMAC over at most MAX_BODY bytes.
        if let Err(why) = check(&hook.spec, url_secret, headers, body) {
            remember_refusal(&mut state, name, why);
            return Receipt::BadSignature;
        }
        // The limit still bounds what a leaked secret can do.
        if !hook.bucket.take(now) {
            remember_refusal(&mut state, name, "rate limited (over 10 requests/s)");
            return Receipt::RateLimited;
        }
        let tokens = crate::outcome::find_tokens(&String::from_utf8_lossy(body));
        let arrived = SystemTime::now();
        for token in &tokens {
            let key = (name.to_string(), token.clone());
            if state.seen.insert(key.clone(), arrived).is_none() {
                state.order.push_back((now, key));
            }
        }
        forget_old(&mut state, now);
        // Answer the waits this request satisfies; drop those whose run gave up.
        let waiters = std::mem::take(&mut state.waiters);
        for w in waiters {
            let hit =
                w.hook == name && tokens.contains(&w.token) && arrived + CLOCK_SKEW >= w.since;
            if hit {
                let _ = w.reply.send(arrived);
            } else if !w.reply.is_closed() {
                state.waiters.push(w);
            }
        }
        Receipt::Accepted(tokens.len())
    }

    /// Waits until `token` arrives on hook `hook` (or arrived since `since`), until `deadline`.
    /// Returns when it arrived.
    pub async fn wait(
        &self,
        hook: &str,
        token: &str,
        since: SystemTime,
        deadline: Instant,
    ) -> Option<SystemTime> {
        let answer = {
            let mut state = self.lock();
            if let Some(at) = state.seen.get(&(hook.to_string(), token.to_string()))
                && *at + CLOCK_SKEW >= since
            {
                return Some(*at);
            }
            let (reply, answer) = oneshot::channel();
            state.waiters.push(Waiter {
                hook: hook.to_string(),
                token: token.to_string(),
                since,
                reply,
            });
            answer
        };
        let found = tokio::time::timeout_at(deadline.into(), answer)
            .await
            .ok()
            .and_then(Result::ok);
        if found.is_none() {
            // Our receiver is gone now; drop every wait whose run gave up.
            self.lock().waiters.retain(|w| !w.reply.is_closed());
        }
        found
    }

    /// Remembers a request to `name` refused before it reached [`Hooks::receive`] (too large,
    /// too slow), if such a hook is declared; undeclared names come from whoever sends.
    pub fn note_refused(&self, name: &str, reason: Rejection) {
        let why = match reason {
            Rejection::TooLarge => "body over 64 KiB",
            Rejection::SlowBody => "body too slow",
            Rejection::BadSignature => "bad signature",
            Rejection::RateLimited => "rate limited (over 10 requests/s)",
            Rejection::UnknownHook | Rejection::OtherShard => return,
        };
        let mut state = self.lock();
        if state.declared.contains_key(name) {
            remember_refusal(&mut state, name, why);
        }
    }

    /// Requests to `hook` refused at or after `since` (less the clock skew allowed for
    /// deliveries), oldest first.
    pub fn refused_since(&self, hook: &str, since: SystemTime) -> Vec<Refusal> {
        self.lock()
            .refusals
            .get(hook)
            .map(|list| {
                list.iter()
                    .filter(|r| r.at + CLOCK_SKEW >= since)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Marks the registry as fed by a web server.
    pub fn mark_served(&self) {
        self.served.store(true, Ordering::Relaxed);
    }

    /// Whether a web server feeds the registry; without one no webhook can ever arrive.
    pub fn is_served(&self) -> bool {
        self.served.load(Ordering::Relaxed)
    }

    /// Names of the declared hooks, sorted.
    pub fn declared(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lock().declared.keys().cloned().collect();
        names.sort();
        names
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic elsewhere mid-update; the maps are still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn forget_old(state: &mut State, now: Instant) {
    while let Some((at, _)) = state.order.front() {
        let too_old = now.saturating_duration_since(*at) > REMEMBER_FOR;
        if !too_old && state.order.len() <= REMEMBER_MAX {
            break;
        }
        if let Some((_, key)) = state.order.pop_front() {
            state.seen.remove(&key);
        }
    }
}

fn remember_refusal(state: &mut State, name: &str, why: &'static str) {
    let list = state.refusals.entry(name.to_string()).or_default();
    if list.len() >= REFUSALS_KEPT {
        list.pop_front();
    }
    list.push_back(Refusal {
        at: SystemTime::now(),
        why,
    });
}

/// Whether the request proves knowledge of the hook's secret; if not, why in words (never
/// quoting what was presented).
fn check(
    spec: &HookSpec,
    url_secret: Option<&str>,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<(), &'static str> {
    if spec.signature == Signature::Url {
        let Some(presented) = url_secret else {
            return Err("no secret in the URL (expected /hooks/NAME/SECRET)");
        };
        return if authentic(spec, presented.as_bytes(), body) {
            Ok(())
        } else {
            Err("wrong secret in the URL")
        };
    }
    if url_secret.is_some() {
        // A header hook called with a path segment: most likely the sender was given a URL
        // meant for `signature: url`; refuse rather than ignore what could be a secret.
        return Err(match spec.signature {
            Signature::Header => {
                "a path segment after the hook name, but the hook expects signature: header"
            }
            _ => "a path segment after the hook name, but the hook expects signature: hmac-sha256",
        });
    }
    let Some(presented) = headers.get(spec.header.as_str()) else {
        return Err("no signature header");
    };
    if authentic(spec, presented.as_bytes(), body) {
        Ok(())
    } else {
        Err("bad signature")
    }
}

fn authentic(spec: &HookSpec, presented: &[u8], body: &[u8]) -> bool {
    let secret = spec.secret.expose().as_bytes();
    match spec.signature {
        Signature::Header | Signature::Url => constant_time_eq(presented, secret),
        Signature::HmacSha256 => {
            let hex = presented.strip_prefix(b"sha256=").unwrap_or(presented);
            let Some(expected) = decode_hex(hex) else {
                return false;
            };
            let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(secret) else {
                return false;
            };
            mac.update(body);
            // verify_slice compares in constant time.
            mac.verify_slice(&expected).is_ok()
        }
    }
}

/// Compares without an early exit, so the time taken does not tell how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn decode_hex(hex: &[u8]) -> Option<Vec<u8>> {
    let hex = hex.trim_ascii();
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

/// Hex HMAC-SHA256 of `body` keyed with `secret`, as a sender computes it (tests, the demo).
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        // HMAC accepts keys of any length; this arm is unreachable in practice.
        Err(_) => return String::new(),
    };
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(signature: Signature) -> HookSpec {
        spec_with(signature, "s3cret")
    }

    fn spec_with(signature: Signature, secret: &str) -> HookSpec {
        HookSpec {
            secret: crate::value::with_overlay(
                &HashMap::from([("S".to_string(), secret.to_string())]),
                || serde_json::from_str::<Secret>("\"${S}\""),
            )
            .unwrap(),
            signature,
            header: "X-Signature".into(),
        }
    }

    const URL_SECRET: &str = "0123456789abcdef-url";

    #[test]
    fn url_mode_takes_the_secret_from_the_path_only() {
        let hooks = Hooks::default();
        hooks.configure(&BTreeMap::from([(
            "crm".into(),
            spec_with(Signature::Url, URL_SECRET),
        )]));
        let mut with_header = http::HeaderMap::new();
        with_header.insert("x-signature", http::HeaderValue::from_static(URL_SECRET));
        let empty = http::HeaderMap::new();
        let since = SystemTime::now();
        assert_eq!(
            hooks.receive(
                "crm",
                Some(URL_SECRET),
                &empty,
                b"sw-cb-1795430400-0a1b2c3d"
            ),
            Receipt::Accepted(1)
        );
        // The secret in a header does not do for a URL hook, nor a near miss in the path.
        assert_eq!(
            hooks.receive("crm", None, &with_header, b"x"),
            Receipt::BadSignature
        );
        assert_eq!(
            hooks.receive("crm", Some("0123456789abcdef-urL"), &empty, b"x"),
            Receipt::BadSignature
        );
        let refused = hooks.refused_since("crm", since);
        let why: Vec<_> = refused.iter().map(|r| r.why).collect();
        assert_eq!(
            why,
            [
                "no secret in the URL (expected /hooks/NAME/SECRET)",
                "wrong secret in the URL"
            ]
        );
        assert!(
            hooks
                .refused_since("crm", since + Duration::from_secs(60))
                .is_empty()
        );
        assert!(hooks.refused_since("other", since).is_empty());
    }

    #[test]
    fn header_hooks_refuse_a_path_segment_and_say_which_header_was_missing() {
        let hooks = Hooks::default();
        hooks.configure(&BTreeMap::from([("crm".into(), spec(Signature::Header))]));
        let mut signed = http::HeaderMap::new();
        signed.insert("x-signature", http::HeaderValue::from_static("s3cret"));
        let since = SystemTime::now();
        assert_eq!(
            hooks.receive("crm", Some("s3cret"), &signed, b"x"),
            Receipt::BadSignature
        );
        assert_eq!(
            hooks.receive("crm", None, &http::HeaderMap::new(), b"x"),
            Receipt::BadSignature
        );
        let why: Vec<_> = hooks
            .refused_since("crm", since)
            .iter()
            .map(|r| r.why)
            .collect();
        assert_eq!(
            why,
            [
                "a path segment after the hook name, but the hook expects signature: header",
                "no signature header"
            ]
        );
    }

    #[test]
    fn refusals_are_bounded_and_forgotten_with_their_hook() {
        let hooks = Hooks::default();
        let declared = BTreeMap::from([("crm".into(), spec(Signature::Header))]);
        hooks.configure(&declared);
        let since = SystemTime::now();
        for _ in 0..100 {
            hooks.note_refused("crm", Rejection::TooLarge);
        }
        hooks.note_refused("undeclared", Rejection::TooLarge);
        assert_eq!(hooks.refused_since("crm", since).len(), REFUSALS_KEPT);
        assert!(hooks.refused_since("undeclared", since).is_empty());
        hooks.configure(&BTreeMap::new());
        hooks.configure(&declared);
        assert!(hooks.refused_since("crm", since).is_empty());
    }

    #[test]
    fn url_secrets_must_be_long_and_unreserved() {
        assert!(validate(&spec_with(Signature::Url, URL_SECRET)).is_ok());
        let short = validate(&spec_with(Signature::Url, "s3cret")).unwrap_err();
        assert!(short.contains("at least 16"), "{short}");
        assert!(!short.contains("s3cret"), "{short}");
        assert!(validate(&spec_with(Signature::Url, "0123456789abcdef/x")).is_err());
        assert!(validate(&spec_with(Signature::Url, "0123456789abcdef%2F")).is_err());
        // Header modes keep accepting any non-empty secret.
        assert!(validate(&spec(Signature::Header)).is_ok());
    }

    #[test]
    fn hmac_accepts_prefixed_and_bare_hex_and_rejects_others() {
        let s = spec(Signature::HmacSha256);
        let body = b"{\"token\":\"sw-cb-1795430400-0a1b2c3d\"}";
        let sig = sign("s3cret", body);
        assert!(authentic(&s, sig.as_bytes(), body));
        assert!(authentic(&s, format!("sha256={sig}").as_bytes(), body));
        assert!(!authentic(&s, sign("other", body).as_bytes(), body));
        assert!(!authentic(&s, b"zz", body));
        assert!(!authentic(&s, b"", body));
    }

    #[test]
    fn header_mode_compares_the_secret() {
        let s = spec(Signature::Header);
        assert!(authentic(&s, b"s3cret", b""));
        assert!(!authentic(&s, b"s3cre", b""));
        assert!(!authentic(&s, b"s3creT", b""));
    }

    #[tokio::test]
    async fn a_token_that_arrived_before_the_wait_still_counts() {
        let hooks = Hooks::default();
        hooks.configure(&BTreeMap::from([("crm".into(), spec(Signature::Header))]));
        let mut headers = http::HeaderMap::new();
        headers.insert("x-signature", http::HeaderValue::from_static("s3cret"));
        let since = SystemTime::now();
        let receipt = hooks.receive("crm", None, &headers, b"call sw-cb-1795430400-0a1b2c3d");
        assert_eq!(receipt, Receipt::Accepted(1));
        let found = hooks
            .wait(
                "crm",
                "sw-cb-1795430400-0a1b2c3d",
                since,
                Instant::now() + Duration::from_millis(10),
            )
            .await;
        assert!(found.is_some());
        assert_eq!(hooks.receive("nope", None, &headers, b""), Receipt::Unknown);
    }

    #[test]
    fn forged_requests_do_not_spend_the_budget_of_signed_ones() {
        let hooks = Hooks::default();
        hooks.configure(&BTreeMap::from([("crm".into(), spec(Signature::Header))]));
        let mut forged = http::HeaderMap::new();
        forged.insert("x-signature", http::HeaderValue::from_static("guess"));
        for _ in 0..500 {
            assert_eq!(
                hooks.receive("crm", None, &forged, b""),
                Receipt::BadSignature
            );
        }
        let mut signed = http::HeaderMap::new();
        signed.insert("x-signature", http::HeaderValue::from_static("s3cret"));
        assert_eq!(
            hooks.receive("crm", None, &signed, b"x"),
            Receipt::Accepted(0)
        );
        // Signed requests still have a limit.
        let accepted = (0..100)
            .filter(|_| hooks.receive("crm", None, &signed, b"x") == Receipt::Accepted(0))
            .count();
        assert!(accepted < 100, "{accepted}");
    }

    #[test]
    fn refusals_are_logged_once_per_interval_with_their_count() {
        let log = RejectionLog::default();
        let start = Instant::now();
        assert_eq!(log.note("crm", Rejection::BadSignature, start), Some(1));
        for _ in 0..99 {
            assert_eq!(log.note("crm", Rejection::BadSignature, start), None);
        }
        // Another reason or hook has its own line.
        assert_eq!(log.note("crm", Rejection::RateLimited, start), Some(1));
        assert_eq!(log.note("a", Rejection::UnknownHook, start), Some(1));
        assert_eq!(log.note("b", Rejection::UnknownHook, start), None);
        let later = start + REJECTION_LOG_EVERY;
        assert_eq!(log.note("crm", Rejection::BadSignature, later), Some(100));
        assert_eq!(log.note("crm", Rejection::BadSignature, later), None);
    }

    #[test]
    fn the_bucket_limits_bursts() {
        let mut b = Bucket::full();
        let now = Instant::now();
        let taken = (0..100).filter(|_| b.take(now)).count();
        assert_eq!(taken, BURST as usize);
    }
}
