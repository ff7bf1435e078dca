//! The problems a config can have: one located [`ConfigError`] each, reported together as
//! [`ConfigErrors`].
//!
//! Apart from reading and merging because both produce them and callers (the CLI, reloads, tests)
//! only ever look at these two types.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// File, when the problem is inside one.
    pub file: Option<PathBuf>,
    /// 1-based line and column, when known.
    pub position: Option<(u64, u64)>,
    /// The check the problem belongs to.
    pub check: Option<String>,
    /// What is wrong and, where it can be guessed, how to fix it.
    pub message: String,
}

impl ConfigError {
    /// A problem of the config as a whole: in no one file and no one check.
    pub fn general(message: impl Into<String>) -> Self {
        ConfigError {
            file: None,
            position: None,
            check: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{}", file.display())?;
            if let Some((line, col)) = self.position {
                write!(f, ":{line}:{col}")?;
            }
            f.write_str(": ")?;
        }
        if let Some(check) = &self.check {
            write!(f, "check \"{check}\": ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in a config, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "{e}")?;
        }
        let n = self.0.len();
        write!(
            f,
            "{n} problem{} in the config",
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    pub(super) fn one(file: Option<&Path>, message: impl Into<String>) -> Self {
        ConfigErrors(vec![ConfigError {
            file: file.map(Path::to_path_buf),
            position: None,
            check: None,
            message: message.into(),
        }])
    }
}
