//! What the supervisor is doing: the [`State`] the machine is in, carrying the data that
//! exists only in that state, and the data-less [`Phase`] name the outside sees.

use std::time::Instant;

use super::Machine;

/// How the binaries of the current start were started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StartKind {
    First,
    Restart,
    /// `visor restart`: as after a crash (latest history segment with a data node), with the
    /// first start's connection budget and no upgrade height.
    Manual,
    Upgrade {
        height: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AfterStop {
    Exit(i32),
    Restart,
    Upgrade,
    /// `visor restart`.
    Manual,
    /// `visor switch`.
    Switch,
}

/// What the supervisor is doing; see ARCHITECTURE.md for the diagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Idle,
    /// Asking the data node for its latest history segment before a restart.
    QueryingSegment,
    Running,
    Stopping,
    /// Binaries stopped after a failure; waiting `restartsDelaySeconds`.
    RestartWait,
    /// Binaries stopped at the upgrade block; waiting for the new folder to be ready.
    UpgradeWait,
    /// Binaries stopped for an operator's `switch`; `current` is being moved.
    SwitchWait,
    Done,
}

impl Phase {
    /// The phase's name in `status.json` and `visor status`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Idle => "starting",
            Phase::QueryingSegment => "querying-segment",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
            Phase::RestartWait => "restart-wait",
            Phase::UpgradeWait => "upgrade-wait",
            Phase::SwitchWait => "switch-wait",
            Phase::Done => "stopped",
        }
    }
}

/// The machine's state. Data that only exists in one state lives in that state: a stop's
/// purpose in `Stopping`, a start's kind, answers and health in `Running`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum State {
    Idle,
    /// Asking the data node for its latest history segment before a start of this kind.
    QueryingSegment {
        kind: StartKind,
    },
    Running(Running),
    /// Stopping the binaries, then doing `then`.
    Stopping {
        then: AfterStop,
    },
    RestartWait,
    UpgradeWait,
    SwitchWait,
    Done,
}

/// A start of the binaries, from the spawn on.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Running {
    pub(super) kind: StartKind,
    /// The core of this start has answered RPC.
    pub(super) answered: bool,
    /// Since when every answer has been a success (for the restart counter reset).
    pub(super) healthy_since: Option<Instant>,
    /// The last failed call, until an answer comes.
    pub(super) last_rpc_error: Option<String>,
}

impl Running {
    pub(super) fn new(kind: StartKind) -> Running {
        Running {
            kind,
            answered: false,
            healthy_since: None,
            last_rpc_error: None,
        }
    }
}

impl State {
    pub(super) fn phase(&self) -> Phase {
        match self {
            State::Idle => Phase::Idle,
            State::QueryingSegment { .. } => Phase::QueryingSegment,
            State::Running(_) => Phase::Running,
            State::Stopping { .. } => Phase::Stopping,
            State::RestartWait => Phase::RestartWait,
            State::UpgradeWait => Phase::UpgradeWait,
            State::SwitchWait => Phase::SwitchWait,
            State::Done => Phase::Done,
        }
    }
}

impl Machine {
    /// What a stop under way will do next, while stopping.
    pub(super) fn stopping_then(&self) -> Option<AfterStop> {
        match self.state {
            State::Stopping { then } => Some(then),
            _ => None,
        }
    }

    /// The running start, while running.
    pub(super) fn running(&self) -> Option<&Running> {
        match &self.state {
            State::Running(running) => Some(running),
            _ => None,
        }
    }

    pub(super) fn running_mut(&mut self) -> Option<&mut Running> {
        match &mut self.state {
            State::Running(running) => Some(running),
            _ => None,
        }
    }

    /// Whether the binaries are being stopped, or are stopped, for the upgrade.
    pub(super) fn upgrading(&self) -> bool {
        self.stopping_then() == Some(AfterStop::Upgrade) || self.state == State::UpgradeWait
    }
}
