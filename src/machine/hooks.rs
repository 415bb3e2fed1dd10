//! When the operator's hooks run, and what their outcome does. `onAccepted` runs once per
//! release after its folder was first checked, and `afterUpgrade` once when an upgraded core
//! first answers; neither changes the upgrade. `beforeSwitch` runs at the upgrade block once
//! the folder is ready, before `current` moves: the switch waits for it, and a failure keeps
//! the binaries stopped and `current` where it is, and runs it again [`HOOK_RETRY`] later
//! with the configuration then in force (a fixed or removed hook lets the upgrade go on).
//!
//! A core that changes its answer at every poll cannot make `onAccepted` pile up: one runs at
//! a time, at most one starts per [`ACCEPTED_SPACING`], and it starts only for the release
//! the core accepts at that moment; a release checked while it cannot start is remembered
//! (only the latest) and started when it can, if the core still accepts it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::{later, Action, Machine, Timer};
use crate::config::hooks::HookKind;
use crate::config::LogLevel;

/// How long after a failed `beforeSwitch` it runs again.
pub const HOOK_RETRY: Duration = Duration::from_secs(10);
/// Two `onAccepted` runs start at least this far apart, whatever the releases.
pub const ACCEPTED_SPACING: Duration = Duration::from_secs(15);
/// How many releases' `onAccepted` runs are remembered, so that each runs once. When that
/// many have run, no further release gets one until Visor restarts (forgetting one instead
/// would run it again when the core accepts it again).
pub const REMEMBERED_ACCEPTED: usize = 256;

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

/// The hooks' part of the machine's state. Every part is bounded: at most one run of each
/// hook at a time, one outcome per hook, [`REMEMBERED_ACCEPTED`] tags and one waiting tag.
#[derive(Debug, Default)]
pub(super) struct HookBook {
    next_id: u64,
    /// Hooks running now: id, kind.
    running: Vec<(u64, HookKind)>,
    /// The process (its own group's leader) of each running hook that has started: id, pid.
    pids: Vec<(u64, u32)>,
    /// The outcome of each hook's last run (by [`HookKind::index`]): `Ok`, or how it failed.
    last: [Option<Result<(), String>>; 3],
    /// Releases whose `onAccepted` has started, at most [`REMEMBERED_ACCEPTED`].
    accepted: BTreeSet<String>,
    /// The latest release whose folder was checked and whose `onAccepted` could not start
    /// yet (one is running, or the last started less than [`ACCEPTED_SPACING`] ago).
    accepted_waiting: Option<String>,
    /// When the last `onAccepted` started.
    accepted_started: Option<Instant>,
    /// The warning that [`REMEMBERED_ACCEPTED`] releases have had their `onAccepted` is given.
    accepted_full_warned: bool,
}

impl HookBook {
    /// How many releases' `onAccepted` runs are remembered.
    #[cfg(test)]
    pub(super) fn remembered_accepted(&self) -> usize {
        self.accepted.len()
    }
}

/// Why a hook runs: `VISOR_REASON`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HookReason {
    /// The upgrade at a block the core agreed on.
    Upgrade,
    /// An operator's `visor switch`.
    Switch,
}

impl HookReason {
    fn as_str(self) -> &'static str {
        match self {
            HookReason::Upgrade => "upgrade",
            HookReason::Switch => "switch",
        }
    }
}

/// The move a hook is about.
pub(super) struct HookSubject<'a> {
    pub(super) reason: HookReason,
    /// The release moved to (`VISOR_RELEASE`).
    pub(super) release: &'a str,
    /// The upgrade block (`VISOR_HEIGHT`); none at a switch.
    pub(super) height: Option<u64>,
    /// The folder of `release` (`VISOR_FOLDER`).
    pub(super) folder: &'a std::path::Path,
    /// The release left (`VISOR_FROM`, and `VISOR_PREVIOUS_RELEASE` as before).
    pub(super) from: &'a str,
    /// The backup taken for this move (`VISOR_BACKUP`), if one was.
    pub(super) backup: Option<&'a std::path::Path>,
}

/// The `afterUpgrade` due when the version an upgrade or a switch started first answers.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct AfterHook {
    pub(super) reason: HookReason,
    pub(super) release: String,
    pub(super) height: Option<u64>,
    pub(super) folder: std::path::PathBuf,
    pub(super) from: String,
    pub(super) backup: Option<std::path::PathBuf>,
}

impl AfterHook {
    pub(super) fn subject(&self) -> HookSubject<'_> {
        HookSubject {
            reason: self.reason,
            release: &self.release,
            height: self.height,
            folder: &self.folder,
            from: &self.from,
            backup: self.backup.as_deref(),
        }
    }
}

impl Machine {
    /// Orders `kind` with the configuration in force, if one is configured; its id.
    pub(super) fn run_hook(&mut self, kind: HookKind, subject: &HookSubject) -> Option<u64> {
        let command = self.config.hooks.command(kind)?.to_vec();
        self.hooks.next_id += 1;
        let id = self.hooks.next_id;
        self.hooks.running.push((id, kind));
        let mut env = vec![
            ("VISOR_EVENT".to_string(), kind.key().to_string()),
            (
                "VISOR_REASON".to_string(),
                subject.reason.as_str().to_string(),
            ),
            ("VISOR_HOME".to_string(), self.home.display().to_string()),
            ("VISOR_RELEASE".to_string(), subject.release.to_string()),
        ];
        if let Some(height) = subject.height {
            env.push(("VISOR_HEIGHT".to_string(), height.to_string()));
        }
        env.push((
            "VISOR_FOLDER".to_string(),
            subject.folder.display().to_string(),
        ));
        env.push(("VISOR_FROM".to_string(), subject.from.to_string()));
        env.push((
            "VISOR_PREVIOUS_RELEASE".to_string(),
            subject.from.to_string(),
        ));
        if let Some(backup) = subject.backup {
            env.push(("VISOR_BACKUP".to_string(), backup.display().to_string()));
        }
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

    /// The folder of the pending release `tag` was checked: its `onAccepted` is due, unless
    /// it has run for that release. It starts now when [`Machine::start_accepted_hook`]
    /// allows, else it waits in place of any release waiting before it.
    pub(super) fn hook_accepted(&mut self, now: Instant, tag: &str) {
        if self.config.hooks.on_accepted.is_none() || self.hooks.accepted.contains(tag) {
            return;
        }
        self.hooks.accepted_waiting = Some(tag.to_string());
        self.start_accepted_hook(now);
    }

    /// Starts the waiting `onAccepted` if it may start now: none runs (the end of the one
    /// that runs calls this again), the last started [`ACCEPTED_SPACING`] ago or more (else
    /// the `AcceptedHook` timer calls this again then), and the core still accepts its release
    /// (else it is dropped).
    pub(super) fn start_accepted_hook(&mut self, now: Instant) {
        if self
            .hooks
            .running
            .iter()
            .any(|(_, kind)| *kind == HookKind::OnAccepted)
        {
            return;
        }
        let Some(tag) = self.hooks.accepted_waiting.clone() else {
            return;
        };
        let still_accepted = self.pending.as_ref().is_some_and(|p| p.tag == tag);
        if !still_accepted || self.exiting() {
            self.hooks.accepted_waiting = None;
            return;
        }
        if let Some(at) = self.hooks.accepted_started {
            let next = later(at, ACCEPTED_SPACING);
            if now < next {
                self.set_timer(Timer::AcceptedHook, next);
                return;
            }
        }
        self.hooks.accepted_waiting = None;
        if self.hooks.accepted.len() >= REMEMBERED_ACCEPTED {
            if !std::mem::replace(&mut self.hooks.accepted_full_warned, true) {
                self.log(
                    LogLevel::Warn,
                    format!(
                        "hook onAccepted: it has run for {REMEMBERED_ACCEPTED} releases since Visor started, the most it remembers; not running it for {tag} or any further release until Visor restarts"
                    ),
                    vec![],
                );
            }
            return;
        }
        let Some(pending) = &self.pending else {
            return;
        };
        let (height, folder) = (pending.height, pending.folder.clone());
        let previous = self.running_release.clone();
        let subject = HookSubject {
            reason: HookReason::Upgrade,
            release: &tag,
            height: Some(height),
            folder: &folder,
            from: &previous,
            backup: None,
        };
        if self.run_hook(HookKind::OnAccepted, &subject).is_some() {
            self.hooks.accepted.insert(tag);
            self.hooks.accepted_started = Some(now);
        }
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
        let backup = pending.backup.path().map(std::path::Path::to_path_buf);
        let previous = self.running_release.clone();
        let subject = HookSubject {
            reason: HookReason::Upgrade,
            release: &tag,
            height: Some(height),
            folder: &folder,
            from: &previous,
            backup: backup.as_deref(),
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

    /// The `beforeSwitch` gate of an operator's switch, once its backup passed: true when
    /// the switch may go on now.
    pub(super) fn switch_before_hook_passed(&mut self, subject: &HookSubject) -> bool {
        match self.switch_hook_gate() {
            Some(GateState::Passed) => return true,
            Some(GateState::NotRun) => {}
            _ => return false,
        }
        let gate = match self.run_hook(HookKind::BeforeSwitch, subject) {
            Some(id) => {
                self.control_progress("running the beforeSwitch hook".to_owned());
                GateState::Running { id }
            }
            None => GateState::Passed,
        };
        self.set_switch_hook_gate(gate);
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
        self.hooks.last[kind.index()] = Some(result.clone());
        self.hooks.pids.retain(|(running, _)| *running != id);
        let key = kind.key();
        let switch_gate = self.switch_hook_gate() == Some(GateState::Running { id });
        match &result {
            Ok(()) => self.log(LogLevel::Info, format!("hook {key}: finished"), vec![]),
            Err(why) => {
                let effect = match kind {
                    HookKind::BeforeSwitch if switch_gate => format!(
                        "the switch is abandoned and {} is started again",
                        self.running_release
                    ),
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
        if kind == HookKind::OnAccepted {
            self.start_accepted_hook(now);
        }
        if switch_gate {
            self.switch_hook_finished(now, result);
            return;
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

    /// What the status file says of the hooks: those running, and those whose last run
    /// failed, with how (`beforeSwitch: exit status 3`, several joined with `; `).
    pub fn hook_status(&self) -> (Vec<&'static str>, Option<String>) {
        let running = self.hooks.running.iter().map(|(_, k)| k.key()).collect();
        let failing: Vec<String> = self
            .hook_failures()
            .map(|(kind, why)| format!("{}: {why}", kind.key()))
            .collect();
        (running, (!failing.is_empty()).then(|| failing.join("; ")))
    }

    /// Each hook that has run since Visor started, and whether its last run succeeded.
    pub fn hook_last_runs(&self) -> Vec<(HookKind, bool)> {
        HookKind::ALL
            .into_iter()
            .filter_map(|kind| {
                let last = self.hooks.last[kind.index()].as_ref()?;
                Some((kind, last.is_ok()))
            })
            .collect()
    }

    /// The hooks whose last run failed, and how.
    pub(super) fn hook_failures(&self) -> impl Iterator<Item = (HookKind, &str)> {
        HookKind::ALL.into_iter().filter_map(|kind| {
            match self.hooks.last[kind.index()].as_ref()? {
                Ok(()) => None,
                Err(why) => Some((kind, why.as_str())),
            }
        })
    }
}
