//! What Visor tells operators and the service manager, derived from the machine and never
//! deciding anything: the [`log`] lines on stderr, the systemd [`notify`] protocol, the
//! Prometheus [`metrics`] textfile, and the [`report`] that feeds systemd, the metrics file
//! and `HOME/.visor/status.json` after each turn of the coordinator.

pub(crate) mod log;
pub mod metrics;
pub(crate) mod notify;
pub(crate) mod report;
