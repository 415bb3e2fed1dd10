//! The threads of `visor run` and the one that decides: the [`coordinator`] owns the state
//! machine, receives every event with one `select!` and carries out the machine's actions.
//! Everything else here only reports: a waiter per [`child`] process, the [`signals`] thread,
//! the [`control_socket`] thread, the operator's [`hooks`], and the one-shot [`workers`]
//! (folder check, segment query, install).

pub mod child;
pub(crate) mod control_socket;
pub(crate) mod coordinator;
pub(crate) mod hooks;
pub(crate) mod memory;
pub(crate) mod signals;
pub(crate) mod workers;
