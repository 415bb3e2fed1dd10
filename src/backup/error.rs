//! `BackupError`: why a backup did not complete, as one message that names the path and says
//! what to do, and a kind the caller can act on. A leaf: it knows no step of the backup.

use std::fmt;

/// What kind of failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The settings cannot work (folder not absolute, overlap, no paths): fix config.toml.
    Settings,
    /// The cancel flag was set (Visor is stopping, or `visor switch` got a signal).
    Cancelled,
    /// `timeoutSeconds` ran out.
    TimedOut,
    /// Not enough free space for a copy.
    NoSpace,
    /// A file-system error on a named path.
    Io,
}

/// A backup that did not complete; its half-made folder has been removed (or the message
/// says it could not be).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupError {
    kind: ErrorKind,
    message: String,
}

impl BackupError {
    pub(super) fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        BackupError {
            kind,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// Adds a sentence to the message (what happened to the half-made folder).
    pub(super) fn and(mut self, sentence: &str) -> Self {
        self.message.push_str("; ");
        self.message.push_str(sentence);
        self
    }
}

impl fmt::Display for BackupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BackupError {}
