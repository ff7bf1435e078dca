//! Correlation tokens: issued once per attempt, carried into whatever a check submits, and found
//! again in mail, webhooks and polled answers. One format and one finder for all of them.

use regex::Regex;
use std::sync::LazyLock;
use std::time::SystemTime;

/// A correlation token: `sw-<check>-<unix seconds>-<random>`.
pub fn new_token(check: &str) -> String {
    let unix = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let random: u32 = rand::random();
    format!("sw-{check}-{unix}-{random:08x}")
}

/// The shape of every token supportwatch issues: `sw-<check>-<unix seconds>-<8 hex digits>`.
static TOKEN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"sw-[A-Za-z0-9_.-]{1,100}?-[0-9]{9,12}-[0-9a-f]{8}\b")
        .expect("token regex compiles")
});

/// Every distinct correlation token in `text`, sorted. Shared by mail, webhooks and HTTP polls so
/// that all delivery targets recognise exactly the same token shape.
pub fn find_tokens(text: &str) -> Vec<String> {
    let mut tokens: Vec<String> = TOKEN
        .find_iter(text)
        .map(|m| m.as_str().to_string())
        .collect();
    tokens.sort();
    tokens.dedup();
    tokens
}
