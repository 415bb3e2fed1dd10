//! The integration tests, one binary (`cargo test --test integration`): every module below
//! runs the built `visor` and `zeta-core-sim` (or the library, for the properties). One
//! binary is linked once, and its tests share the machine's cores. tests/docs.rs, which keeps
//! the manual pages in step with the code, is a binary of its own because the pages name it.
//!
//! `common` holds the helpers every module may use: a fresh home per test, a running Visor,
//! the simulator's record, polling with deadlines, the fault-injection support and the fake
//! GitHub; also the run's random seed (`common::seed`: fixed unless `VISOR_SEED` is set) and
//! the switch to the long campaigns (`common::slow_tests`: `VISOR_SLOW_TESTS=1`, as CI runs
//! them). ARCHITECTURE.md "Testing" describes both.

mod common;

mod auto_install_run;
mod backup;
mod backup_commands;
mod bad_config;
mod cli_manners;
mod control_channel;
mod fault_injection;
mod fault_injection_install;
mod folder_trust;
mod hooks;
mod hostile;
mod hostile_inputs;
mod install;
mod messages;
mod migration;
mod observability;
mod one_visor;
mod operations;
mod properties;
mod signed_releases;
mod sim_protocol;
mod soak;
mod supervision;
mod upgrade;
mod versions;
