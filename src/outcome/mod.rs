//! The run vocabulary at the ground of the crate: what an attempt is given and what a run found.
//!
//! [`RunContext`] (token and phases of one attempt), [`Outcome`] (what a probe returns, with an
//! optional [`FollowUp`] delivery stage), [`Failure`] and its bounded [`FailureKind`],
//! [`Observation`]s, and the finished [`RunReport`]. Probes produce these, the runner assembles
//! them, metrics, logs and alerting read them; none of those needs to import another for it.

mod attempt;
mod context;
mod failure;
mod identity;
mod observation;
mod report;
mod token;

pub use attempt::{FollowUp, FollowUpResult, LateDelivery, Outcome};
pub(crate) use context::serialize_opt_secs;
pub use context::{PhaseTiming, RunContext};
pub use failure::{Failure, FailureKind};
pub use identity::{CheckIdentity, DEFAULT_SHOP, Labels};
pub use observation::{CertReport, Observation};
pub use report::{RunReport, RunResult};
pub use token::{find_tokens, new_token};
