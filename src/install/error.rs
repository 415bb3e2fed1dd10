//! Why an install failed: [`InstallError`], its [`InstallErrorKind`], and one constructor per
//! kind for the steps of the install folder.
//!
//! A leaf: it imports nothing from the rest of the install folder, so every step may use it.

use std::fmt;

/// Why an install failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallErrorKind {
    /// No such release, or no such asset in it.
    NotFound,
    /// GitHub refused: rate limit, or a token that is missing or rejected.
    Forbidden,
    /// A 5xx answer, a connection failure or a truncated download, after the retries.
    Transient,
    /// No checksum to check against, or the SHA-256 does not match.
    Verification,
    /// A bad asset: a zip entry that would land outside, a missing binary, a wrong version.
    Invalid,
    /// The local machine: disk, permissions, a folder outside HOME or in the way.
    Local,
    /// A download that did not finish within `[autoInstall] downloadTimeoutSeconds`.
    TimedOut,
}

/// An install failure: its kind and a message naming the URL, file, asset or tag, and saying
/// what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallError {
    pub kind: InstallErrorKind,
    pub message: String,
}

impl InstallError {
    pub fn new(kind: InstallErrorKind, message: String) -> InstallError {
        InstallError { kind, message }
    }
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for InstallError {}

pub(super) fn not_found(message: String) -> InstallError {
    InstallError::new(InstallErrorKind::NotFound, message)
}

pub(super) fn forbidden(message: String) -> InstallError {
    InstallError::new(InstallErrorKind::Forbidden, message)
}

pub(super) fn transient(message: String) -> InstallError {
    InstallError::new(InstallErrorKind::Transient, message)
}

pub(super) fn verification(message: String) -> InstallError {
    InstallError::new(InstallErrorKind::Verification, message)
}

pub(super) fn invalid(message: String) -> InstallError {
    InstallError::new(InstallErrorKind::Invalid, message)
}

pub(super) fn local(message: String) -> InstallError {
    InstallError::new(InstallErrorKind::Local, message)
}

pub(super) fn timed_out(message: String) -> InstallError {
    InstallError::new(InstallErrorKind::TimedOut, message)
}

/// The failure of an install stopped by its cancel flag; `what` names the asset or request.
pub(super) fn interrupted(what: &str) -> InstallError {
    local(format!(
        "{what}: interrupted; nothing was installed, run visor prepare again to retry"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_display_their_message() {
        let error = local("x: y".to_owned());
        assert_eq!(error.to_string(), "x: y");
        assert_eq!(error.kind, InstallErrorKind::Local);
    }
}
