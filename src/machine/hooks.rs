//! When the operator's hooks run, and what their outcome does. `onAccepted` runs once per
//! release after its folder was first checked, and `afterUpgrade` once when an upgraded core
//! first answers; neither changes the upgrade. `beforeSwitch` runs at the upgrade block once
//! the folder is ready, before `current` moves: the switch waits for it, and a failure keeps
//! the binaries stopped and `current` where it is, and runs it again [`HOOK_RETRY`] later
//! with the configuration then in force (a fixed or removed hook lets the upgrade go on).

use std::time::{Duration, Instant};

use super::{later, Action, Machine, Timer};
use crate::config::hooks::HookKind;
use crate::config::LogLevel;

/// How long after a failed `beforeSwitch` it runs again.
pub const HOOK_RETRY: Duration = Duration::from_secs(10);
/// How many releases' `onAccepted` runs are remembered, so each runs once.
const REMEMBERED_ACCEPTED: usize = 256;

/// Where the `beforeSwitch` hook of the pending upgrade is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum GateState {
    #[default]
    NotRun,
    Running {
        id: u64,
    },
    Failed,
    Passed,
}

/// The hooks' part of the machine's state.
#[derive(Debug, Default)]
pub(super) struct HookBook {
    next_id: u64,
    /// Hooks running now: id, kind.
    running: Vec<(u64, HookKind)>,
    /// The process (its own group's leader) of each running hook that has started: id, pid.
    pids: Vec<(u64, u32)>,
    /// The last failure, until that hook succeeds: kind and why.
    failing: Option<(HookKind, String)>,
    /// Releases whose `onAccepted` has run, oldest first.
    accepted: std::collections::VecDeque<String>,
}

/// The release a hook is about.
pub(super) struct HookSubject<'a> {
    pub(super) release: &'a str,
    pub(super) height: u64,
    pub(super) folder: &'a std::path::Path,
    pub(super) previous: &'a str,
}

impl Machine {
    /// Orders `kind` with the configuration in force, if one is configured; its id.
    pub(super) fn run_hook(&mut self, kind: HookKind, subject: &HookSubject) -> Option<u64> {
        let command = self.config.hooks.command(kind)?.to_vec();
        self.hooks.next_id += 1;
        let id = self.hooks.next_id;
        self.hooks.running.push((id, kind));
        let env = vec![
            ("VISOR_EVENT".to_string(), kind.event().to_string()),
            ("VISOR_HOME".to_string(), self.home.display().to_string()),
            ("VISOR_RELEASE".to_string(), subject.release.to_string()),
            ("VISOR_HEIGHT".to_string(), subject.height.to_string()),
            (
                "VISOR_FOLDER".to_string(),
                subject.folder.display().to_string(),
            ),
            (
                "VISOR_PREVIOUS_RELEASE".to_string(),
                subject.previous.to_string(),
            ),
        ];
        self.log(
            LogLevel::Info,
            format!("hook {}: running for {}", kind.key(), subject.release),
            vec![("command", command.join(" "))],
        );
        self.actions.push_back(Action::RunHook {
            id,
            kind,
            command,
            env,
            timeout: self.config.hooks.timeout,
        });
        Some(id)
    }

    /// `onAccepted`, once per release.
    pub(super) fn hook_accepted(&mut self, tag: &str) {
        if self.hooks.accepted.iter().any(|t| t == tag) {
            return;
        }
        if self.hooks.accepted.len() >= REMEMBERED_ACCEPTED {
            self.hooks.accepted.pop_front();
        }
        self.hooks.accepted.push_back(tag.to_string());
        let Some(pending) = &self.pending else {
            return;
        };
        let (height, folder) = (pending.height, pending.folder.clone());
        let previous = self.running_release.clone();
        let subject = HookSubject {
            release: tag,
            height,
            folder: &folder,
            previous: &previous,
        };
        self.run_hook(HookKind::OnAccepted, &subject);
    }

    /// The `beforeSwitch` gate of the pending upgrade: true when the switch may go on now.
    pub(super) fn before_switch_passed(&mut self) -> bool {
        let Some(pending) = &self.pending else {
            return false;
        };
        match pending.gate {
            GateState::Passed => return true,
            GateState::Running { .. } => return false,
            GateState::NotRun | GateState::Failed => {}
        }
        let (tag, height, folder) = (pending.tag.clone(), pending.height, pending.folder.clone());
        let previous = self.running_release.clone();
        let subject = HookSubject {
            release: &tag,
            height,
            folder: &folder,
            previous: &previous,
        };
        let gate = match self.run_hook(HookKind::BeforeSwitch, &subject) {
            Some(id) => GateState::Running { id },
            None => GateState::Passed,
        };
        if let Some(pending) = &mut self.pending {
            pending.gate = gate;
        }
        gate == GateState::Passed
    }

    pub(super) fn on_hook_finished(
        &mut self,
        now: Instant,
        id: u64,
        kind: HookKind,
        result: Result<(), String>,
    ) {
        self.hooks.running.retain(|(running, _)| *running != id);
        self.hooks.pids.retain(|(running, _)| *running != id);
        let key = kind.key();
        match &result {
            Ok(()) => {
                if self.hooks.failing.as_ref().is_some_and(|(k, _)| *k == kind) {
                    self.hooks.failing = None;
                }
                self.log(LogLevel::Info, format!("hook {key}: finished"), vec![]);
            }
            Err(why) => {
                self.hooks.failing = Some((kind, why.clone()));
                let effect = match kind {
                    HookKind::BeforeSwitch => format!(
                        "the binaries stay stopped and current is not moved; running it again in {} s with config.toml as it is then (fix or remove [hooks] beforeSwitch to go on)",
                        HOOK_RETRY.as_secs()
                    ),
                    _ => "the upgrade is not affected".to_string(),
                };
                self.log(
                    LogLevel::Error,
                    format!("hook {key} failed ({why}); {effect}"),
                    vec![],
                );
            }
        }
        let gate_of_this_run = self
            .pending
            .as_ref()
            .is_some_and(|p| p.gate == GateState::Running { id });
        if !gate_of_this_run {
            return;
        }
        let passed = result.is_ok();
        if let Some(pending) = &mut self.pending {
            pending.gate = if passed {
                GateState::Passed
            } else {
                GateState::Failed
            };
        }
        if passed {
            self.advance_upgrade(now);
        } else {
            self.set_timer(Timer::FolderRecheck, later(now, HOOK_RETRY));
        }
    }

    /// A hook run has started as process `pid`.
    pub(super) fn on_hook_started(&mut self, id: u64, pid: u32) {
        if self.hooks.running.iter().any(|(running, _)| *running == id) {
            self.hooks.pids.push((id, pid));
        }
    }

    /// The processes of the running hooks: the hook's key and its pid (its group's leader).
    pub fn hook_processes(&self) -> Vec<(&'static str, u32)> {
        self.hooks
            .pids
            .iter()
            .filter_map(|(id, pid)| {
                let (_, kind) = self.hooks.running.iter().find(|(r, _)| r == id)?;
                Some((kind.key(), *pid))
            })
            .collect()
    }

    /// What the status file says of the hooks: those running, and the last failure.
    pub fn hook_status(&self) -> (Vec<&'static str>, Option<String>) {
        let running = self.hooks.running.iter().map(|(_, k)| k.key()).collect();
        let failing = self
            .hooks
            .failing
            .as_ref()
            .map(|(k, why)| format!("{}: {why}", k.key()));
        (running, failing)
    }
}
