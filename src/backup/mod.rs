//! The backup engine: a copy of the node's data (the `[backup]` paths) into a folder of its
//! own, taken while the binaries are stopped, before an upgrade's switch or an operator's
//! `visor switch`. Files are cloned (`FICLONE`) where the file system allows, so a backup
//! takes seconds and no space at first; else copied. See `run` for the steps, `validate` for
//! what is checked before any block.
//!
//! A leaf: it imports only std, libc, `config::backup` (the settings) and `home` (release
//! tags, version folders, the `.visor-tmp-` scheme). It must not log (progress and notes go to
//! a [`Progress`]), decide when a backup is taken or what a failure means for the upgrade
//! (the machine's), or write anywhere but the backup folder.

mod copy;
mod error;
mod keep;
mod name;
mod progress;
mod run;
mod sys;
mod temp;
mod tree;
mod validate;

#[cfg(test)]
mod tests;

pub use error::{BackupError, ErrorKind};
pub use keep::{backups, footprint};
pub use name::{stamp, BackupName, Reason};
pub use progress::{size, Progress, Report, Silent, REPORT_EVERY};
pub use run::{run, Completed, Request};
pub use temp::{remove_leftovers, Leftovers, TEMP_START};
pub use validate::{
    validate, DropIn, PathReport, Problem, Validation, DROP_IN_FILE, RESERVE, UNIT,
};
