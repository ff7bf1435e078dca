//! The context of one attempt: its check, its correlation token and the phases timed so far.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The state of one attempt: its token and the phases timed so far.
///
/// The runner keeps the context outside the probe's future, so when the attempt times out and the
/// future is dropped, the phases recorded up to that moment still tell *where* it hung.
///
/// Clones share the phase list: a run's second stage (waiting for a delivery) records its phases
/// into the same run.
#[derive(Clone)]
pub struct RunContext {
    /// The check's name.
    pub check: Arc<str>,
    /// Correlation token carried into whatever the check submits.
    pub token: String,
    /// Wall-clock start of the attempt.
    pub started_at: SystemTime,
    /// When the runner gives up on the attempt (its `timeout`), if it is bounded.
    deadline: Option<Instant>,
    phases: Arc<Mutex<Vec<PhaseTiming>>>,
}

/// How long one phase of an attempt took.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PhaseTiming {
    /// Phase name (`connect`, `tls`, `request`, `body`, ...), from a bounded set per kind.
    pub name: String,
    /// Duration; `None` while the phase is still open.
    #[serde(serialize_with = "serialize_opt_secs")]
    pub duration: Option<Duration>,
    #[serde(skip)]
    started: Instant,
}

/// Serializes an optional duration as seconds (JSON output of `check --json`).
pub(crate) fn serialize_opt_secs<S: serde::Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

impl RunContext {
    /// A fresh context for one attempt.
    pub fn new(check: Arc<str>, token: String) -> Self {
        RunContext {
            check,
            token,
            started_at: SystemTime::now(),
            deadline: None,
            phases: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The same context, with the moment the runner will give up on the attempt.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// When the runner gives up on the attempt: a probe may keep listening until shortly before
    /// it, to tell "late" from "never" (a chat bot that answers after `within`).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Ends the open phase, if any, and starts `name`.
    pub fn begin(&self, name: impl Into<String>) {
        let now = Instant::now();
        let mut phases = self.lock();
        close_open(&mut phases, now);
        phases.push(PhaseTiming {
            name: name.into(),
            duration: None,
            started: now,
        });
    }

    /// Records a finished phase that ran alongside others (so `begin` would close them).
    pub fn record(&self, name: impl Into<String>, duration: Duration) {
        self.lock().push(PhaseTiming {
            name: name.into(),
            duration: Some(duration),
            started: Instant::now(),
        });
    }

    /// Ends the open phase, if any.
    pub fn end(&self) {
        close_open(&mut self.lock(), Instant::now());
    }

    /// Times `fut` as phase `name`.
    pub async fn timed<T>(&self, name: impl Into<String>, fut: impl Future<Output = T>) -> T {
        self.begin(name);
        let out = fut.await;
        self.end();
        out
    }

    /// How long the last phase called `name` took, if it has ended.
    pub fn phase_duration(&self, name: &str) -> Option<Duration> {
        self.lock()
            .iter()
            .rev()
            .find(|p| p.name == name)
            .and_then(|p| p.duration)
    }

    /// The phase still open (where a timed-out attempt was stuck), if any.
    pub fn open_phase(&self) -> Option<String> {
        self.lock()
            .iter()
            .rev()
            .find(|p| p.duration.is_none())
            .map(|p| p.name.clone())
    }

    /// All phases, open ones closed at `now`.
    pub fn take_phases(&self) -> Vec<PhaseTiming> {
        let mut phases = self.lock();
        close_open(&mut phases, Instant::now());
        std::mem::take(&mut *phases)
    }

    /// Values for `{{token}}`-style templates in this attempt.
    pub fn now_rfc3339(&self) -> String {
        humantime::format_rfc3339_seconds(self.started_at).to_string()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PhaseTiming>> {
        // A poisoned lock only means another thread panicked mid-push; the data is still usable.
        self.phases.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn close_open(phases: &mut [PhaseTiming], now: Instant) {
    for p in phases.iter_mut().filter(|p| p.duration.is_none()) {
        p.duration = Some(now.saturating_duration_since(p.started));
    }
}
