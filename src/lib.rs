//! Zeta Visor: runs a Zeta core node (and data node) and swaps binaries at protocol upgrades.
//!
//! The binary's entry point is [`commands::main`]; ARCHITECTURE.md maps the modules.

pub mod child;
pub mod cli;
pub mod commands;
pub mod config;
pub mod config_watch;
pub mod control;
pub mod coordinator;
pub mod fingerprint;
pub mod folder_check;
pub mod github;
pub mod home;
pub mod install;
pub mod log;
pub mod machine;
pub mod metrics;
pub mod node_commands;
pub mod notify;
pub mod permissions;
pub mod report;
pub mod rpc;
pub mod rpc_poll;
pub mod run_config;
pub mod signals;
pub mod supervise_folder;
pub mod tasks;
pub mod zip_extract;
