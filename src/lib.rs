//! Zeta Visor: runs a Zeta core node (and data node) and swaps binaries at protocol upgrades.
//!
//! The binary's entry point is [`commands::main`]; ARCHITECTURE.md maps the modules. The
//! folders are the architecture:
//!
//! - [`machine`]: every decision, as a sans-IO state machine (events and time in, actions out);
//! - [`supervise`]: the coordinator thread that drives the machine, and the threads and
//!   workers that only report to it (children, signals, control socket, one-shot workers);
//! - [`node`]: the core node's side: its status RPC client and poller, its command lines,
//!   the check that a version folder can be started;
//! - [`config`]: config.toml and run-config.toml, and the config watcher thread;
//! - [`home`]: every path under HOME, `current`, the supervise folder, permissions;
//! - [`install`]: one install of one release from GitHub;
//! - [`signature`]: minisign public keys and signature files, verified and counted by key;
//! - [`backup`]: the backup of the node's data before an upgrade or a switch;
//! - [`ops`]: what operators and systemd are told: log, sd_notify, metrics, status;
//! - [`process`]: the process primitives (spawn, process groups, signals, the subreaper,
//!   descendants, bounded output), a leaf that imports nothing else of Visor;
//! - [`commands`] and [`cli`]: the command line.

pub mod backup;
pub mod cli;
pub mod commands;
pub mod config;
pub mod home;
pub mod install;
pub mod machine;
pub mod node;
pub mod ops;
pub mod process;
pub mod signature;
pub mod supervise;
