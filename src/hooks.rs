//! The webhook receiver registry: `POST /hooks/NAME` proves that a shop's CRM or telephony system
//! passed a run's token on to us.
//!
//! Hooks are declared once under top-level `hooks:`, each with a secret that authenticates the
//! sender: either the raw secret in a header (`signature: header`), or a hex HMAC-SHA256 of the
//! body keyed with the secret (`signature: hmac-sha256`, the default, as GitHub and most CRMs
//! send it). A request that fails authentication never counts as a delivery.
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
}

/// One entry under `hooks:`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookSpec {
    /// The shared secret; use `${ENV}` or `${file:…}`, it is never shown.
    pub secret: Secret,
    /// `hmac-sha256` (default) or `header`.
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
    /// Accepted; this many tokens were recorded.
    Accepted(usize),
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
    /// (hook, token) → when it arrived.
    seen: HashMap<(String, String), SystemTime>,
    /// Arrival order, for forgetting the oldest first.
    order: VecDeque<(Instant, (String, String))>,
    waiters: Vec<Waiter>,
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

    /// Handles one request to hook `name`: rate limit, authentication, then every token in the
    /// body is recorded and waiting runs are answered.
    pub fn receive(&self, name: &str, headers: &http::HeaderMap, body: &[u8]) -> Receipt {
        let now = Instant::now();
        let mut state = self.lock();
        let Some(hook) = state.declared.get_mut(name) else {
            return Receipt::Unknown;
        };
        // Before the signature, so a flood of forged requests costs no hashing.
        if !hook.bucket.take(now) {
            return Receipt::RateLimited;
        }
        let presented = headers
            .get(hook.spec.header.as_str())
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if !authentic(&hook.spec, presented, body) {
            return Receipt::BadSignature;
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

fn authentic(spec: &HookSpec, presented: &[u8], body: &[u8]) -> bool {
    let secret = spec.secret.expose().as_bytes();
    match spec.signature {
        Signature::Header => constant_time_eq(presented, secret),
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
        HookSpec {
            secret: crate::value::with_overlay(
                &HashMap::from([("S".to_string(), "s3cret".to_string())]),
                || serde_json::from_str::<Secret>("\"${S}\""),
            )
            .unwrap(),
            signature,
            header: "X-Signature".into(),
        }
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
        let receipt = hooks.receive("crm", &headers, b"call sw-cb-1795430400-0a1b2c3d");
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
        assert_eq!(hooks.receive("nope", &headers, b""), Receipt::Unknown);
    }

    #[test]
    fn the_bucket_limits_bursts() {
        let mut b = Bucket::full();
        let now = Instant::now();
        let taken = (0..100).filter(|_| b.take(now)).count();
        assert_eq!(taken, BURST as usize);
    }
}
