//! Value types at the ground of the crate: what config files are made of and every layer names.
//!
//! Durations, `${ENV}` text and secrets, compiled patterns and templates, sizes, the check kinds
//! and channels, "did you mean" hints, small formatting helpers and the redactor that scrubs
//! secrets from text leaving the process. Nothing here knows about
//! checks, probes or the daemon, so any module may use it without creating an import circle.

mod duration;
mod format;
mod interp;
mod kind;
mod pattern;
pub mod redact;
mod size;
mod suggest;

pub use duration::{Dur, MAX_DURATION, parse_duration};
pub use format::{short_duration, shown_url};
pub use interp::{MAX_SECRET_FILE_BYTES, Secret, Text, expand, file_type_name, with_overlay};
pub use kind::{Channel, Kind};
pub use pattern::{Pattern, Template, TemplateVars, with_phone_numbers};
pub use size::ByteSize;
pub use suggest::closest;
