//! The operator's requests to a running Visor: `visor restart` and `visor switch TAG`.
//!
//! A request is carried out only while the binaries run normally (phase `Running`, no
//! upgrade in its stop, switch or first start); otherwise it is refused and nothing changes.
//! One request at a time. A switch checks the new folder (run-config, binaries, version)
//! before anything stops, and a folder that is not ready is refused with nothing stopped.
//! Once the binaries stopped, a switch takes the backup (`[backup]`) and runs `beforeSwitch`
//! as an upgrade does; a failure of either (a backup's only with `onFailure = "stop"`)
//! abandons the switch: the old version is started again and the request fails, naming the
//! cause. `afterUpgrade` runs when the new core first answers.

use std::path::PathBuf;
use std::time::Instant;

use super::backup::BackupGate;
use super::hooks::{AfterHook, GateState, HookReason, HookSubject};
use super::{
    Action, AfterStop, ControlReply, ControlRequest, Machine, Phase, StartKind, State, SwitchError,
    Timer,
};
use crate::config::run_config::RunConfig;
use crate::config::LogLevel;
use crate::home;
use crate::node::fingerprint::CheckedFolder;

/// The request being carried out.
#[derive(Debug)]
pub(super) struct ControlJob {
    id: u64,
    kind: JobKind,
}

#[derive(Debug)]
enum JobKind {
    /// `visor restart`: the run-config of `current` is read again first (`read`: the one
    /// read, to start from once the binaries have stopped), then the binaries stop
    /// (`stopping`) and start again.
    Restart {
        read: Option<Box<RunConfig>>,
        stopping: bool,
    },
    Switch {
        tag: String,
        folder: PathBuf,
        checked: Option<Box<CheckedFolder>>,
        /// Once the binaries stopped: the backup, then `beforeSwitch`.
        backup: BackupGate,
        hook: GateState,
    },
}

impl Machine {
    /// The tag an operator's switch is moving to, while one is under way.
    pub(super) fn switch_tag(&self) -> Option<&str> {
        match &self.control {
            Some(ControlJob {
                kind: JobKind::Switch { tag, .. },
                ..
            }) => Some(tag),
            _ => None,
        }
    }

    fn reply(&mut self, id: u64, reply: ControlReply) {
        self.actions.push_back(Action::ControlReply { id, reply });
    }

    /// Why a request cannot be carried out now, if it cannot.
    fn control_refusal(&self) -> Option<String> {
        if self.control.is_some() {
            return Some("another restart or switch is under way; wait for it to finish".into());
        }
        if self.upgrading() {
            return Some(format!(
                "the upgrade to {} is under way; wait until it has finished",
                self.pending.as_ref().map_or("?", |p| p.tag.as_str())
            ));
        }
        if self.phase() == Phase::Running && self.first_start_height.is_some() {
            return Some(format!(
                "{} has not answered since its upgrade; wait until it has",
                self.running_release
            ));
        }
        if self.phase() != Phase::Running {
            return Some(format!(
                "Visor is {}; try again when the node runs",
                self.status_line()
            ));
        }
        None
    }

    pub(super) fn on_control(&mut self, now: Instant, id: u64, request: ControlRequest) {
        if let Some(why) = self.control_refusal() {
            self.reply(id, ControlReply::Refused(why));
            return;
        }
        match request {
            ControlRequest::Restart => {
                self.control = Some(ControlJob {
                    id,
                    kind: JobKind::Restart {
                        read: None,
                        stopping: false,
                    },
                });
                let folder = self.running_folder().to_path_buf();
                self.reply(
                    id,
                    ControlReply::Progress(format!(
                        "reading {}/run-config.toml again; nothing is stopped until it is usable",
                        folder.display()
                    )),
                );
                self.actions.push_back(Action::ReadRunConfig { folder });
                let _ = now;
            }
            ControlRequest::Switch { tag } => {
                if tag == self.running_release {
                    self.reply(
                        id,
                        ControlReply::Refused(format!("{tag} is already running")),
                    );
                    return;
                }
                let folder =
                    match home::upgrade_folder(&self.home, &self.config.upgrade_folders, &tag) {
                        Ok(folder) => folder,
                        Err(error) => {
                            self.reply(id, ControlReply::Refused(error));
                            return;
                        }
                    };
                self.reply(
                    id,
                    ControlReply::Progress(format!(
                        "checking the folder for {tag} ({}); nothing is stopped until it is ready",
                        folder.display()
                    )),
                );
                self.actions.push_back(Action::CheckSwitchFolder {
                    tag: tag.clone(),
                    folder: folder.clone(),
                });
                self.control = Some(ControlJob {
                    id,
                    kind: JobKind::Switch {
                        tag,
                        folder,
                        checked: None,
                        backup: BackupGate::NotRun,
                        hook: GateState::NotRun,
                    },
                });
            }
        }
    }

    pub(super) fn on_switch_folder_checked(
        &mut self,
        now: Instant,
        tag: String,
        result: Result<Box<CheckedFolder>, String>,
    ) {
        let Some(ControlJob {
            id,
            kind:
                JobKind::Switch {
                    tag: wanted,
                    checked,
                    ..
                },
        }) = &mut self.control
        else {
            return;
        };
        if *wanted != tag || checked.is_some() {
            return;
        }
        let id = *id;
        let ready = match result {
            Ok(ready) => ready,
            Err(problem) => {
                self.control = None;
                self.reply(
                    id,
                    ControlReply::Refused(format!(
                        "the folder for {tag} is not ready: {problem}; nothing was stopped"
                    )),
                );
                return;
            }
        };
        *checked = Some(ready);
        // The node may have stopped running while the folder was checked (an upgrade, a crash).
        if self.phase() != Phase::Running || self.upgrading() {
            self.control = None;
            self.reply(
                id,
                ControlReply::Refused(format!(
                    "Visor is now {}; nothing was switched",
                    self.status_line()
                )),
            );
            return;
        }
        self.log(
            LogLevel::Info,
            format!(
                "switch: folder for {tag} is ready; stopping {} to switch",
                self.running_release
            ),
            vec![],
        );
        self.reply(
            id,
            ControlReply::Progress(format!(
                "folder for {tag} is ready; stopping {}",
                self.running_release
            )),
        );
        self.upgrade_began = Some(now);
        self.begin_stop(now, AfterStop::Switch);
    }

    /// The binaries stopped for a switch: the backup, `beforeSwitch`, then the move of
    /// `current`.
    pub(super) fn on_stopped_for_switch(&mut self, now: Instant) {
        self.state = State::SwitchWait;
        self.advance_switch(now);
    }

    /// Moves a stopped switch forward as far as its backup and `beforeSwitch` allow: when
    /// both passed, moves `current` if the folder is still as checked.
    pub(super) fn advance_switch(&mut self, now: Instant) {
        if self.phase() != Phase::SwitchWait {
            return;
        }
        let Some(ControlJob {
            kind:
                JobKind::Switch {
                    tag,
                    folder,
                    checked: Some(checked),
                    ..
                },
            ..
        }) = &self.control
        else {
            return;
        };
        let (tag, folder, checked) = (tag.clone(), folder.clone(), checked.clone());
        if !self.switch_backup_passed(now, &tag) {
            return;
        }
        let backup = self
            .switch_backup_gate()
            .and_then(BackupGate::path)
            .map(std::path::Path::to_path_buf);
        let from = self.running_release.clone();
        let subject = HookSubject {
            reason: HookReason::Switch,
            release: &tag,
            height: None,
            folder: &folder,
            from: &from,
            backup: backup.as_deref(),
        };
        if !self.switch_before_hook_passed(&subject) {
            return;
        }
        self.switch_to("switch", &tag, folder, &checked);
    }

    /// The backup gate of the switch under way, if one is.
    pub(super) fn switch_backup_gate(&self) -> Option<&BackupGate> {
        match &self.control {
            Some(ControlJob {
                kind: JobKind::Switch { backup, .. },
                ..
            }) => Some(backup),
            _ => None,
        }
    }

    pub(super) fn set_switch_backup_gate(&mut self, gate: BackupGate) {
        if let Some(ControlJob {
            kind: JobKind::Switch { backup, .. },
            ..
        }) = &mut self.control
        {
            *backup = gate;
        }
    }

    /// The `beforeSwitch` gate of the switch under way, if one is.
    pub(super) fn switch_hook_gate(&self) -> Option<GateState> {
        match &self.control {
            Some(ControlJob {
                kind: JobKind::Switch { hook, .. },
                ..
            }) => Some(*hook),
            _ => None,
        }
    }

    pub(super) fn set_switch_hook_gate(&mut self, gate: GateState) {
        if let Some(ControlJob {
            kind: JobKind::Switch { hook, .. },
            ..
        }) = &mut self.control
        {
            *hook = gate;
        }
    }

    /// The `beforeSwitch` of a switch ended: the switch goes on, or is abandoned.
    pub(super) fn switch_hook_finished(&mut self, now: Instant, result: Result<(), String>) {
        match result {
            Ok(()) => {
                self.set_switch_hook_gate(GateState::Passed);
                self.advance_switch(now);
            }
            Err(why) => {
                self.set_switch_hook_gate(GateState::Failed);
                self.abandon_switch(now, &format!("the beforeSwitch hook failed ({why})"));
            }
        }
    }

    /// A progress line for the operator's request under way, if any.
    pub(super) fn control_progress(&mut self, line: String) {
        if let Some(id) = self.control.as_ref().map(|job| job.id) {
            self.reply(id, ControlReply::Progress(line));
        }
    }

    /// Ends a switch whose binaries stopped without moving `current`: the old version is
    /// started again, and the request fails naming `why`.
    pub(super) fn abandon_switch(&mut self, now: Instant, why: &str) {
        let Some(ControlJob {
            id,
            kind: JobKind::Switch { tag, .. },
        }) = self.control.take()
        else {
            return;
        };
        self.log(
            LogLevel::Error,
            format!(
                "switch: not switched to {tag}: {why}; starting {} again",
                self.running_release
            ),
            vec![],
        );
        self.reply(
            id,
            ControlReply::Failed(format!(
                "not switched to {tag}: {why}; {} was started again",
                self.running_release
            )),
        );
        self.upgrade_began = None;
        self.start(now, StartKind::Manual);
    }

    pub(super) fn on_switched_for_operator(
        &mut self,
        now: Instant,
        result: Result<(), SwitchError>,
    ) {
        if let Err(error) = result {
            let why = match error {
                SwitchError::FolderChanged(change) => {
                    format!("the folder changed since it was checked ({change})")
                }
                SwitchError::Failed(error) => format!("current could not be moved ({error})"),
            };
            self.abandon_switch(now, &why);
            return;
        }
        let Some(ControlJob {
            id,
            kind:
                JobKind::Switch {
                    tag,
                    folder,
                    checked,
                    backup,
                    ..
                },
        }) = self.control.take()
        else {
            return;
        };
        let Some(checked) = checked else {
            return;
        };
        self.run = checked.run;
        self.after_start = Some(AfterHook {
            reason: HookReason::Switch,
            release: tag.clone(),
            height: None,
            folder,
            from: self.running_release.clone(),
            backup: backup.path().map(std::path::Path::to_path_buf),
        });
        self.running_release = tag.clone();
        self.restarts = 0;
        self.first_start_height = None;
        self.warned_ready_running = false;
        if self.pending.as_ref().is_some_and(|p| p.tag == tag) {
            self.pending = None;
            self.clear_timer(Timer::FolderRecheck);
        }
        self.log(
            LogLevel::Info,
            format!("switch: current now points at {tag}; starting it"),
            vec![],
        );
        self.reply(
            id,
            ControlReply::Progress(format!("current now points at {tag}; starting it")),
        );
        // The reply that the switch is done comes when the new core answers.
        self.control = Some(ControlJob {
            id,
            kind: JobKind::Restart {
                read: None,
                stopping: true,
            },
        });
        self.start(now, StartKind::First);
    }

    /// The run-config of `current` was read again for a restart: stop the binaries to start
    /// from it, or refuse with nothing stopped.
    pub(super) fn on_run_config_read(
        &mut self,
        now: Instant,
        result: Result<Box<RunConfig>, String>,
    ) {
        let Some(ControlJob {
            id,
            kind: JobKind::Restart {
                stopping: false, ..
            },
        }) = self.control
        else {
            return;
        };
        let runs = self.phase() == Phase::Running && !self.upgrading();
        let run = match result {
            Ok(run) if runs => run,
            Ok(_) => {
                self.control = None;
                let why = format!("Visor is now {}; nothing was restarted", self.status_line());
                self.reply(id, ControlReply::Refused(why));
                return;
            }
            Err(problem) => {
                self.control = None;
                self.reply(
                    id,
                    ControlReply::Refused(format!("{problem}; nothing was stopped")),
                );
                return;
            }
        };
        if let Some(ControlJob {
            kind: JobKind::Restart { read, stopping },
            ..
        }) = &mut self.control
        {
            *read = Some(run);
            *stopping = true;
        }
        self.log(
            LogLevel::Info,
            format!(
                "supervise: restart of {} requested; stopping the binaries",
                self.running_release
            ),
            vec![],
        );
        self.reply(
            id,
            ControlReply::Progress(format!(
                "stopping {} to start it again",
                self.running_release
            )),
        );
        self.begin_stop(now, AfterStop::Manual);
    }

    /// The binaries stopped for a restart: the run-config read for it is the one started.
    pub(super) fn take_restart_run_config(&mut self) {
        if let Some(ControlJob {
            kind: JobKind::Restart { read, .. },
            ..
        }) = &mut self.control
        {
            if let Some(run) = read.take() {
                self.run = *run;
            }
        }
    }

    /// The core answered: a restart or switch under way is done.
    pub(super) fn control_answered(&mut self) {
        if let Some(job) = self.control.take() {
            let kind = match job.kind {
                JobKind::Restart { stopping: true, .. } => "running",
                _ => {
                    // Still reading or checking before anything stopped: not done yet.
                    self.control = Some(job);
                    return;
                }
            };
            self.reply(
                job.id,
                ControlReply::Done(format!("{} is {kind} and answering", self.running_release)),
            );
        }
    }

    /// Ends a request under way with a failure.
    pub(super) fn fail_control(&mut self, why: &str) {
        if let Some(job) = self.control.take() {
            self.reply(job.id, ControlReply::Failed(why.to_string()));
        }
    }
}
