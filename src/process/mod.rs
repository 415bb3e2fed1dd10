//! The process primitives, in a leaf room of their own: it imports nothing from the rest of
//! Visor, so `supervise/`, `node/`, `config/` and `commands/` all build on it without
//! reaching into one another. Callers map their own types (`Proc`, `StopSignal`) onto the
//! plain values taken here.
//!
//! - [`spawn`]: every child Visor starts (own process group, parent-death signal, environment
//!   without [`spawn::WITHHELD_VARIABLES`]), the record of those children until they are
//!   reaped, and how an exit status reads;
//! - [`signal`]: signals to a process group (never 0, 1 or Visor's own) or to one process
//!   still identified by its start time;
//! - [`table`]: `/proc/PID/stat` read and parsed, for one process or all of them;
//! - [`group`]: whether a process group still has live members, whether a process leads one;
//! - [`descendants`]: what a hook run or a node process started, inside its process group
//!   and outside it, and stopping all of it;
//! - [`reaper`]: Visor as a child subreaper, reaping the orphans re-parented to it;
//! - [`identity`]: what names one process across a restart of Visor (pid, start time, boot
//!   id, uid, executable);
//! - [`output`]: the bounded reader of a child's output.

pub mod descendants;
pub mod group;
pub mod identity;
pub mod output;
pub mod reaper;
pub mod signal;
pub mod spawn;
pub mod table;

pub use signal::Signal;

/// Stack size of helper threads: they only wait or copy small buffers.
pub const SMALL_STACK: usize = 64 * 1024;
/// Stack size of threads that parse TOML files an operator or a release wrote (config.toml,
/// a new folder's run-config.toml): the parser recurses once per nesting level before it
/// refuses the file, which takes about 1 MiB in a debug build. Only touched pages cost memory.
pub const PARSER_STACK: usize = 4 * 1024 * 1024;
