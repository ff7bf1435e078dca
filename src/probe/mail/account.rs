//! Pacing per SMTP account: `min_interval` between sends, and backing off after a 4xx answer.
//!
//! Mail providers throttle and eventually block accounts that send too often or keep knocking
//! after being told to wait. The state lives in a process-wide registry keyed by account (login
//! and server, or only the server without AUTH), not in the loaded config, for two reasons:
//! every check that sends through the same account must see it, and a config reload must not
//! forget that the server asked us to slow down a minute ago.
//!
//! One run at a time per account: a run holds the account's async mutex from the pacing check
//! until its SMTP session ends. tokio's mutex is fair (FIFO), so queued runs go in order, and
//! a run dropped by its timeout while queued or waiting leaves no state behind.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

/// First back-off after a transient (4xx) answer.
pub const BACKOFF_FIRST: Duration = Duration::from_secs(60);
/// Back-off never grows beyond this: a monitor must notice recovery within the hour.
pub const BACKOFF_MAX: Duration = Duration::from_secs(3600);

/// Which account a send goes through.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccountKey {
    /// SMTP login, when the check authenticates.
    pub user: Option<String>,
    /// Server as `host:port`: the MX on 25 and the submission service on 587 throttle
    /// separately.
    pub server: String,
}

impl fmt::Display for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user {
            Some(user) => write!(f, "{user} on {}", self.server),
            None => f.write_str(&self.server),
        }
    }
}

/// An account's shared pacing state.
pub struct Account {
    /// Which account this is.
    pub key: AccountKey,
    /// Held by the run that is using the account.
    pub state: tokio::sync::Mutex<Pacing>,
}

/// Accounts seen by this process. Entries are never removed: there is one per distinct account
/// in any config ever loaded, a handful, and forgetting one would forget its back-off.
static ACCOUNTS: LazyLock<Mutex<HashMap<AccountKey, Arc<Account>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The process-wide pacing state of `key`.
pub fn account(key: AccountKey) -> Arc<Account> {
    // A poisoned lock only means a thread panicked while inserting; the map is still usable.
    let mut accounts = ACCOUNTS.lock().unwrap_or_else(|e| e.into_inner());
    accounts
        .entry(key.clone())
        .or_insert_with(|| {
            Arc::new(Account {
                key,
                state: tokio::sync::Mutex::new(Pacing::default()),
            })
        })
        .clone()
}

/// When an account was last used and whether it is backing off.
#[derive(Debug, Default)]
pub struct Pacing {
    last_use: Option<Instant>,
    backoff: Option<Backoff>,
}

/// A back-off ordered by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    /// How long this back-off lasts.
    pub period: Duration,
    /// When sending is allowed again.
    pub until: Instant,
    /// The answer that caused it, e.g. `421 4.7.0 Try again later`.
    pub cause: String,
}

impl Pacing {
    /// The back-off in force at `now`, if any.
    pub fn backing_off(&self, now: Instant) -> Option<&Backoff> {
        self.backoff.as_ref().filter(|b| b.until > now)
    }

    /// How long a run at `now` waits out the back-off before sending, when the back-off ends with
    /// at least half of the attempt's time left (the attempt ends at `deadline`); `None` when no
    /// back-off is in force or it lasts too long, and the run fails as backing off.
    pub fn backoff_wait(&self, now: Instant, deadline: Option<Instant>) -> Option<Duration> {
        let backoff = self.backing_off(now)?;
        let left = backoff.until.saturating_duration_since(now);
        let remaining = deadline?.saturating_duration_since(now);
        (left <= remaining / 2).then_some(left)
    }

    /// How long a run must wait at `now` so that `min_interval` has passed since the last use.
    pub fn wait_needed(&self, now: Instant, min_interval: Duration) -> Duration {
        match self.last_use {
            Some(last) => (last + min_interval).saturating_duration_since(now),
            None => Duration::ZERO,
        }
    }

    /// The account was used (a session was opened) at `now`.
    pub fn used(&mut self, now: Instant) {
        self.last_use = Some(now);
    }

    /// A 4xx answer at `now`: back off twice as long as last time (1m, 2m, 4m, … 1h). Returns
    /// the new period.
    pub fn transient(&mut self, now: Instant, cause: String) -> Duration {
        let period = match &self.backoff {
            Some(previous) => (previous.period * 2).min(BACKOFF_MAX),
            None => BACKOFF_FIRST,
        };
        self.backoff = Some(Backoff {
            period,
            until: now + period,
            cause,
        });
        period
    }

    /// The server accepted a message: the next 4xx starts again at the first back-off.
    pub fn success(&mut self) {
        self.backoff = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour_and_resets_on_success() {
        let mut pacing = Pacing::default();
        let t0 = Instant::now();
        let periods: Vec<u64> = (0..8)
            .map(|i| {
                pacing
                    .transient(t0 + Duration::from_secs(i), "421 busy".into())
                    .as_secs()
                    / 60
            })
            .collect();
        assert_eq!(periods, [1, 2, 4, 8, 16, 32, 60, 60]);
        let b = pacing.backing_off(t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(b.cause, "421 busy");
        assert!(
            pacing
                .backing_off(t0 + Duration::from_secs(7 + 3600))
                .is_none()
        );
        pacing.success();
        assert!(pacing.backing_off(t0).is_none());
        assert_eq!(
            pacing.backoff_wait(t0, Some(t0 + Duration::from_secs(30))),
            None
        );
        assert_eq!(pacing.transient(t0, "451".into()), BACKOFF_FIRST);
    }

    #[test]
    fn min_interval_counts_from_the_last_use() {
        let mut pacing = Pacing::default();
        let t0 = Instant::now();
        let minute = Duration::from_secs(60);
        assert_eq!(pacing.wait_needed(t0, minute), Duration::ZERO);
        pacing.used(t0);
        assert_eq!(
            pacing.wait_needed(t0 + Duration::from_secs(15), minute),
            Duration::from_secs(45)
        );
        assert_eq!(pacing.wait_needed(t0 + minute * 2, minute), Duration::ZERO);
        assert_eq!(pacing.wait_needed(t0, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn accounts_are_shared_by_key() {
        let key = AccountKey {
            user: Some("monitor@example.ru".into()),
            server: "smtp.example.ru:587".into(),
        };
        let a = account(key.clone());
        let b = account(key);
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(
            a.key.to_string(),
            "monitor@example.ru on smtp.example.ru:587"
        );
        let c = account(AccountKey {
            user: None,
            server: "[::1]:25".into(),
        });
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(c.key.to_string(), "[::1]:25");
    }

    /// A back-off that ends within the first half of the attempt is waited out; a longer one,
    /// or one with no deadline known, fails the run at once.
    #[test]
    fn a_back_off_ending_soon_is_waited_out() {
        let t0 = Instant::now();
        let mut pacing = Pacing::default();
        pacing.transient(t0, "421 busy".into());
        let until = t0 + BACKOFF_FIRST;
        let near_end = until - Duration::from_millis(46);
        assert_eq!(
            pacing.backoff_wait(near_end, Some(near_end + Duration::from_secs(20))),
            Some(Duration::from_millis(46))
        );
        assert_eq!(
            pacing.backoff_wait(t0, Some(t0 + Duration::from_secs(20))),
            None
        );
        assert_eq!(pacing.backoff_wait(near_end, None), None);
        assert_eq!(
            pacing.backoff_wait(until, Some(until + Duration::from_secs(20))),
            None,
            "no back-off in force"
        );
    }
}
