//! The progress lines of an install: every step (lookup, checksums, download, unpack, version
//! check, placing the folder) reports through one [`Progress`], and the install itself never
//! logs. [`ToLog`] is where `visor prepare` and the `visor-install` worker send them.
//!
//! A leaf beside `error`: it knows nothing of the steps.

/// Where the progress lines of one install go. Called from the installing thread.
pub trait Progress {
    /// One line for the log: a message and its fields.
    fn report(&mut self, message: &str, fields: Vec<(&'static str, String)>);
}

/// Progress lines written to Visor's log at level info.
#[derive(Debug, Default, Clone, Copy)]
pub struct ToLog;

impl Progress for ToLog {
    fn report(&mut self, message: &str, fields: Vec<(&'static str, String)>) {
        crate::ops::log::info(message, &fields);
    }
}
