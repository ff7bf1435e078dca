//! What one attempt of a probe found, and the second stage (a delivery to wait for) it may leave.

use super::{Failure, FailureKind, Observation};
use futures::future::BoxFuture;
use std::fmt;
use std::time::Duration;

/// What one attempt found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// `None` when the attempt passed.
    pub failure: Option<Failure>,
    /// Measurements exported as metrics (status code, certificate expiry, ...).
    pub observations: Vec<Observation>,
    /// Human-readable facts for `check` output and logs; never secrets.
    pub details: Vec<String>,
    /// The run's second stage, when the attempt submitted something whose arrival must be
    /// proven. The runner awaits it after the run's concurrency permits are released.
    pub follow_up: Option<FollowUp>,
}

/// The second stage of a run: waiting for what the first stage submitted to arrive.
pub struct FollowUp {
    /// Hard bound on the stage (the probe enforces its own `within`; this is the backstop).
    pub limit: Duration,
    /// The stage; its outcome's failure, observations and details are merged into the run's.
    pub stage: BoxFuture<'static, FollowUpResult>,
}

impl fmt::Debug for FollowUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FollowUp")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// What the second stage found, and, when the delivery missed its deadline, a watch for it
/// arriving late.
pub struct FollowUpResult {
    /// Failure, observations and details of the stage.
    pub outcome: Outcome,
    /// Resolves when the late watch ends: the delivery arrived after all, or it is lost.
    pub late: Option<BoxFuture<'static, LateDelivery>>,
}

/// How a delivery that missed its deadline ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LateDelivery {
    /// It arrived after the deadline, this long after the submit.
    Arrived(Duration),
    /// It did not arrive within the late window.
    Lost,
    /// It bounced: it will never arrive.
    Bounced,
}

impl Outcome {
    /// A passing outcome.
    pub fn pass() -> Self {
        Outcome::default()
    }
    /// A failing outcome.
    pub fn fail(kind: FailureKind, message: impl Into<String>) -> Self {
        Outcome {
            failure: Some(Failure {
                kind,
                message: message.into(),
            }),
            ..Outcome::default()
        }
    }
    /// Marks the outcome failed unless it already failed (the first reason is kept).
    pub fn fail_with(&mut self, kind: FailureKind, message: impl Into<String>) {
        if self.failure.is_none() {
            self.failure = Some(Failure {
                kind,
                message: message.into(),
            });
        }
    }
    /// Whether the attempt passed.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}
