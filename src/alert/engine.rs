//! The per-check alert state machine. Pure: time comes in as an argument, decisions come out as
//! [`Event`]s, and the state is plain data the store saves as JSON.
//!
//! - A failed run counts towards `failure_threshold` consecutive failures; reaching it fires.
//!   With a window rule, `failures` failed runs within `in` also fire, passes in between or not.
//! - `success_threshold` consecutive passes resolve, but while the window rule still holds the
//!   alert stays firing: a check flapping fail/pass sends one message, not one per run.
//! - During maintenance nothing is sent. An alert that fired during maintenance is announced when
//!   it ends (if still firing); a resolve of an announced alert is sent when it ends.
//! - While firing and announced, a reminder goes out every `repeat`.

use super::Policy;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What is remembered about one check's alert, across restarts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertState {
    /// The alert fires.
    pub firing: bool,
    /// Failed runs in a row.
    pub consecutive_failures: u32,
    /// Passed runs in a row.
    pub consecutive_successes: u32,
    /// Start of the current failure streak or incident (unix seconds).
    pub failing_since: Option<f64>,
    /// When recent runs failed (unix seconds), for the window rule.
    #[serde(default)]
    pub recent_failures: VecDeque<f64>,
    /// Bounded reason of the last failed run.
    #[serde(default)]
    pub reason_kind: String,
    /// Technical reason of the last failed run.
    #[serde(default)]
    pub reason: String,
    /// Where the last failed run's evidence was saved, if anywhere.
    #[serde(default)]
    pub evidence: Option<String>,
    /// People were told that this incident fires.
    pub announced: bool,
    /// When people were last told about this incident (unix seconds), for reminders.
    pub last_told: Option<f64>,
    /// A resolve held back by maintenance: (incident start, resolved at), unix seconds.
    pub resolve_held: Option<(f64, f64)>,
}

/// A decision to tell people something.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// What happened.
    pub status: crate::notify::AlertStatus,
    /// Start of the incident.
    pub since: SystemTime,
    /// When it resolved (resolves only).
    pub resolved_at: Option<SystemTime>,
    /// Failed runs in a row at the time.
    pub consecutive_failures: u32,
    /// Bounded reason.
    pub reason_kind: String,
    /// Technical reason.
    pub reason: String,
    /// Evidence of the last failed run.
    pub evidence: Option<String>,
}

/// What the engine needs to know about a finished run.
#[derive(Clone, Debug)]
pub struct FinishedRun {
    /// When the run started.
    pub started_at: SystemTime,
    /// Whether it passed.
    pub passed: bool,
    /// Bounded reason, when it failed.
    pub reason_kind: String,
    /// Technical reason, when it failed.
    pub reason: String,
    /// Where its evidence was saved, when it failed and left some.
    pub evidence: Option<String>,
}

/// Seconds since the epoch.
pub fn secs(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

/// The instant `s` seconds after the epoch.
pub fn instant(s: f64) -> SystemTime {
    UNIX_EPOCH + Duration::try_from_secs_f64(s.max(0.0)).unwrap_or_default()
}

impl AlertState {
    fn window_holds(&mut self, policy: &Policy, now: SystemTime) -> bool {
        let Some(rule) = policy.window else {
            self.recent_failures.clear();
            return false;
        };
        let oldest = secs(now) - rule.within.get().as_secs_f64();
        while self.recent_failures.front().is_some_and(|t| *t < oldest) {
            self.recent_failures.pop_front();
        }
        self.recent_failures.len() >= rule.failures as usize
    }

    fn event(&self, status: crate::notify::AlertStatus, resolved_at: Option<SystemTime>) -> Event {
        Event {
            status,
            since: instant(self.failing_since.unwrap_or_default()),
            resolved_at,
            consecutive_failures: self.consecutive_failures,
            reason_kind: self.reason_kind.clone(),
            reason: self.reason.clone(),
            evidence: self.evidence.clone(),
        }
    }

    /// Takes a finished run into account. `quiet` is true during maintenance.
    pub fn observe(
        &mut self,
        run: &FinishedRun,
        policy: &Policy,
        now: SystemTime,
        quiet: bool,
    ) -> Vec<Event> {
        use crate::notify::AlertStatus;
        let mut events = Vec::new();
        if run.passed {
            self.consecutive_failures = 0;
            self.consecutive_successes = self.consecutive_successes.saturating_add(1);
            let window = self.window_holds(policy, now);
            if self.firing {
                if self.consecutive_successes >= policy.success_threshold && !window {
                    self.firing = false;
                    if self.announced && policy.send_on_resolved {
                        if quiet {
                            self.resolve_held =
                                Some((self.failing_since.unwrap_or_default(), secs(now)));
                        } else {
                            events.push(self.event(AlertStatus::Resolved, Some(now)));
                        }
                    }
                    self.announced = false;
                    self.last_told = None;
                    self.failing_since = None;
                }
            } else if !window {
                self.failing_since = None;
            }
            return events;
        }
        self.consecutive_successes = 0;
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
        self.failing_since.get_or_insert(secs(run.started_at));
        self.reason_kind.clone_from(&run.reason_kind);
        self.reason.clone_from(&run.reason);
        self.evidence.clone_from(&run.evidence);
        if policy.window.is_some() {
            self.recent_failures.push_back(secs(run.started_at));
            // Bounded whatever the rule: a window never needs more than this many entries.
            while self.recent_failures.len() > 1000 {
                self.recent_failures.pop_front();
            }
        }
        let window = self.window_holds(policy, now);
        if !self.firing && (self.consecutive_failures >= policy.failure_threshold || window) {
            self.firing = true;
            if let Some((since, _)) = self.resolve_held.take() {
                // Resolved and broke again while nobody was told: for the people who heard it
                // fire, it is one incident that never ended.
                self.failing_since = Some(since);
                self.announced = true;
            } else if !quiet {
                events.push(self.event(AlertStatus::Firing, None));
                self.announced = true;
                self.last_told = Some(secs(now));
            }
        }
        events
    }

    /// What time alone decides: announcements and resolves held back by maintenance, reminders.
    pub fn tick(&mut self, policy: &Policy, now: SystemTime, quiet: bool) -> Vec<Event> {
        use crate::notify::AlertStatus;
        if quiet {
            return Vec::new();
        }
        let mut events = Vec::new();
        if let Some((since, at)) = self.resolve_held.take() {
            let mut held = self.clone();
            held.failing_since = Some(since);
            events.push(held.event(AlertStatus::Resolved, Some(instant(at))));
        }
        if self.firing && !self.announced {
            events.push(self.event(AlertStatus::Firing, None));
            self.announced = true;
            self.last_told = Some(secs(now));
        } else if self.firing
            && let Some(repeat) = policy.repeat
            && self
                .last_told
                .is_some_and(|t| secs(now) - t >= repeat.as_secs_f64())
        {
            events.push(self.event(AlertStatus::Reminder, None));
            self.last_told = Some(secs(now));
        }
        events
    }

    /// Whether time alone can change this state ([`AlertState::tick`] has something to do): an
    /// alert fires (announcement held by maintenance, reminders) or a resolve is held back.
    /// The alerting task ticks only such states, so a tick costs nothing per healthy check.
    pub fn time_driven(&self) -> bool {
        self.firing || self.resolve_held.is_some()
    }

    /// Whether `self` must be written over `saved`, the state last written for the check. Passes
    /// in a row are read only while the alert fires (a failure resets them before it can fire
    /// again), so a passing check that does not fire is not rewritten on every run.
    pub fn differs_on_disk(&self, saved: &AlertState) -> bool {
        // Destructured, so a new field cannot be forgotten here.
        let AlertState {
            firing,
            consecutive_failures,
            consecutive_successes,
            failing_since,
            recent_failures,
            reason_kind,
            reason,
            evidence,
            announced,
            last_told,
            resolve_held,
        } = self;
        let successes_matter = *firing || saved.firing;
        *firing != saved.firing
            || *consecutive_failures != saved.consecutive_failures
            || (successes_matter && *consecutive_successes != saved.consecutive_successes)
            || *failing_since != saved.failing_since
            || *recent_failures != saved.recent_failures
            || *reason_kind != saved.reason_kind
            || *reason != saved.reason
            || *evidence != saved.evidence
            || *announced != saved.announced
            || *last_told != saved.last_told
            || *resolve_held != saved.resolve_held
    }

    /// A check that stops alerting (removed, or `enabled: false`) forgets its incident; an
    /// announced one is resolved so nobody waits for a resolve that never comes.
    pub fn retire(&mut self, now: SystemTime) -> Vec<Event> {
        let events = if self.firing && self.announced {
            vec![self.event(crate::notify::AlertStatus::Resolved, Some(now))]
        } else {
            Vec::new()
        };
        *self = AlertState::default();
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::WindowRule;
    use crate::notify::AlertStatus::{self, *};
    use crate::value::Dur;

    fn policy() -> Policy {
        Policy {
            enabled: true,
            failure_threshold: 2,
            success_threshold: 1,
            send_on_resolved: true,
            repeat: None,
            window: None,
        }
    }

    /// Feeds a pattern of runs one minute apart (`F` fail, `P` pass); returns the statuses sent.
    fn feed(
        state: &mut AlertState,
        policy: &Policy,
        pattern: &str,
        start: u64,
    ) -> Vec<AlertStatus> {
        let mut out = Vec::new();
        for (i, c) in pattern.chars().enumerate() {
            let t = UNIX_EPOCH + Duration::from_secs(start + 60 * i as u64);
            let run = FinishedRun {
                started_at: t,
                passed: c == 'P',
                reason_kind: "timeout".into(),
                reason: "no answer within 30s".into(),
                evidence: None,
            };
            out.extend(
                state
                    .observe(&run, policy, t, false)
                    .into_iter()
                    .map(|e| e.status),
            );
        }
        out
    }

    #[test]
    fn fires_after_threshold_and_resolves_once() {
        let mut s = AlertState::default();
        assert_eq!(
            feed(&mut s, &policy(), "FFFFPPP", 1000),
            vec![Firing, Resolved]
        );
        assert!(!s.firing);
    }

    #[test]
    fn since_is_the_first_failure_and_counts_are_kept() {
        let mut s = AlertState::default();
        let p = policy();
        feed(&mut s, &p, "PF", 1000);
        let t = UNIX_EPOCH + Duration::from_secs(1200);
        let run = FinishedRun {
            started_at: t,
            passed: false,
            reason_kind: "not_delivered".into(),
            reason: "not delivered within 5m".into(),
            evidence: Some("artifacts/form/sw-1".into()),
        };
        let events = s.observe(&run, &p, t, false);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].since, UNIX_EPOCH + Duration::from_secs(1060));
        assert_eq!(events[0].consecutive_failures, 2);
        assert_eq!(events[0].reason_kind, "not_delivered");
        assert_eq!(events[0].evidence.as_deref(), Some("artifacts/form/sw-1"));
    }

    #[test]
    fn alternating_never_fires_with_consecutive_thresholds() {
        let mut s = AlertState::default();
        assert!(feed(&mut s, &policy(), "FPFPFPFPFPFP", 1000).is_empty());
    }

    #[test]
    fn success_threshold_needs_consecutive_passes() {
        let mut s = AlertState::default();
        let p = Policy {
            success_threshold: 3,
            ..policy()
        };
        assert_eq!(feed(&mut s, &p, "FFPPFPPP", 1000), vec![Firing, Resolved]);
    }

    #[test]
    fn window_rule_fires_through_passes_and_damps_flapping() {
        let mut s = AlertState::default();
        let p = Policy {
            window: Some(WindowRule {
                failures: 3,
                within: Dur::secs(600),
            }),
            ..policy()
        };
        // Alternating for 20 minutes: one message, then one resolve once the window is clean.
        let events = feed(&mut s, &p, "FPFPFPFPFPFPFPFPFPFPPPPPPPPPPPP", 1000);
        assert_eq!(events, vec![Firing, Resolved]);
    }

    #[test]
    fn maintenance_holds_messages_until_it_ends() {
        let p = policy();
        let mut s = AlertState::default();
        let t = |m: u64| UNIX_EPOCH + Duration::from_secs(1000 + 60 * m);
        let fail = |m| FinishedRun {
            started_at: t(m),
            passed: false,
            reason_kind: "connect".into(),
            reason: "refused".into(),
            evidence: None,
        };
        assert!(s.observe(&fail(0), &p, t(0), true).is_empty());
        assert!(s.observe(&fail(1), &p, t(1), true).is_empty());
        assert!(s.firing && !s.announced);
        assert!(s.tick(&p, t(2), true).is_empty());
        let after = s.tick(&p, t(3), false);
        assert_eq!(
            after.iter().map(|e| e.status).collect::<Vec<_>>(),
            vec![Firing]
        );
        assert!(s.tick(&p, t(4), false).is_empty(), "announced once");

        // Fired and announced; resolves during maintenance: the resolve comes after it.
        let pass = FinishedRun {
            started_at: t(5),
            passed: true,
            reason_kind: String::new(),
            reason: String::new(),
            evidence: None,
        };
        assert!(s.observe(&pass, &p, t(5), true).is_empty());
        let after = s.tick(&p, t(6), false);
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].status, Resolved);
        assert_eq!(after[0].resolved_at, Some(t(5)));
        assert_eq!(after[0].since, t(0));
    }

    #[test]
    fn fired_and_resolved_inside_maintenance_says_nothing() {
        let p = policy();
        let mut s = AlertState::default();
        let t = |m: u64| UNIX_EPOCH + Duration::from_secs(1000 + 60 * m);
        for (m, passed) in [(0, false), (1, false), (2, true)] {
            let run = FinishedRun {
                started_at: t(m),
                passed,
                reason_kind: "connect".into(),
                reason: "refused".into(),
                evidence: None,
            };
            assert!(s.observe(&run, &p, t(m), true).is_empty());
        }
        assert!(s.tick(&p, t(3), false).is_empty());
    }

    #[test]
    fn reminders_every_repeat_while_firing() {
        let p = Policy {
            repeat: Some(Duration::from_secs(4 * 3600)),
            ..policy()
        };
        let mut s = AlertState::default();
        feed(&mut s, &p, "FF", 0);
        let mut reminders = 0;
        for minute in 2..(13 * 60) {
            let now = UNIX_EPOCH + Duration::from_secs(60 * minute);
            reminders += s.tick(&p, now, false).len();
        }
        // Fired at minute 1; reminders at 4h01, 8h01, 12h01.
        assert_eq!(reminders, 3);
    }

    #[test]
    fn no_resolve_message_when_disabled_and_state_survives_json() {
        let p = Policy {
            send_on_resolved: false,
            ..policy()
        };
        let mut s = AlertState::default();
        assert_eq!(feed(&mut s, &p, "FF", 0), vec![Firing]);
        let json = serde_json::to_string(&s).expect("serialize");
        let mut back: AlertState = serde_json::from_str(&json).expect("deserialize");
        assert_eq!(back, s);
        assert!(
            feed(&mut back, &p, "F", 600).is_empty(),
            "no second firing after reload"
        );
        assert!(feed(&mut back, &p, "P", 700).is_empty());
    }

    #[test]
    fn passes_of_a_quiet_check_are_not_a_change_to_write_and_need_no_ticks() {
        let policy = policy();
        let mut state = AlertState::default();
        feed(&mut state, &policy, "PPP", 0);
        let saved = AlertState::default();
        assert!(!state.differs_on_disk(&saved));
        assert!(!state.time_driven());
        let before = state.clone();
        feed(&mut state, &policy, "F", 600);
        assert!(state.differs_on_disk(&before));
        let before = state.clone();
        feed(&mut state, &policy, "F", 700);
        assert!(state.firing && state.differs_on_disk(&before) && state.time_driven());
        // While firing, passes in a row decide the resolve: they are written.
        let mut more = state.clone();
        more.consecutive_successes += 1;
        assert!(more.differs_on_disk(&state));
    }
}
