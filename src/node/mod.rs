//! The core node (and data node) as Visor sees them: the admin RPC [`client`] that asks for the
//! upgrade status and the [`poller`] thread that runs it, the node [`commands`] Visor builds
//! and parses (flags added once, version and latest-segment output), and the
//! [`folder_check`] that tells whether a version folder can be started.

pub mod client;
pub mod commands;
pub(crate) mod fingerprint;
pub mod folder_check;
pub(crate) mod poller;
