//! The upgrade half of the machine: the release the core accepted, its folder (checked,
//! installed, or waited for), and the switch of `current` at the upgrade block.

use std::path::Path;
use std::time::Instant;

use super::*;

impl Machine {
    pub(super) fn on_upgrade_status(&mut self, now: Instant, status: UpgradeStatus) {
        let Some(release) = status.accepted else {
            if let Some(pending) = self.pending.take() {
                self.log(
                    LogLevel::Warn,
                    format!(
                        "upgrade: release {} is no longer accepted by the core",
                        pending.tag
                    ),
                    vec![],
                );
                self.clear_timer(Timer::FolderRecheck);
                self.cancel_superseded_install();
                self.start_polling();
            }
            return;
        };
        if release.tag == self.running_release {
            if status.ready && !self.warned_ready_running {
                self.warned_ready_running = true;
                self.log(
                    LogLevel::Warn,
                    format!("upgrade: core says ready to upgrade to {} which is already running; ignoring", release.tag),
                    vec![],
                );
            }
            return;
        }
        let folder =
            match home::upgrade_folder(&self.home, &self.config.upgrade_folders, &release.tag) {
                Ok(folder) => folder,
                Err(error) => {
                    if self.refused_tag.as_deref() != Some(release.tag.as_str()) {
                        self.refused_tag = Some(release.tag.clone());
                        self.log(LogLevel::Error, format!("upgrade: {error}"), vec![]);
                    }
                    return;
                }
            };
        let is_new = self.pending.as_ref().map(|p| &p.tag) != Some(&release.tag);
        if is_new {
            self.accept(&release.tag, release.height, folder);
        } else if let Some(pending) = &mut self.pending {
            pending.height = release.height;
        }
        if status.ready {
            self.log(
                LogLevel::Info,
                format!(
                    "upgrade: core stopped at block {} and is ready for {}; stopping the binaries",
                    release.height, release.tag
                ),
                vec![],
            );
            self.upgrade_began = Some(now);
            self.actions.push_back(Action::MarkUpgrade {
                tag: release.tag.clone(),
                height: release.height,
            });
            self.begin_stop(now, AfterStop::Upgrade);
        }
    }

    /// A release the core accepted that is not pending yet: it becomes the pending one, its
    /// folder is checked, and polling speeds up.
    fn accept(&mut self, tag: &str, height: u64, folder: PathBuf) {
        self.log(
            LogLevel::Info,
            format!("upgrade: release {tag} accepted at block {height}"),
            vec![("folder", folder.display().to_string())],
        );
        self.pending = Some(Pending {
            tag: tag.to_string(),
            height,
            folder,
            state: FolderState::Checking,
            last_complaint: None,
            backup: Default::default(),
            gate: Default::default(),
        });
        self.clear_timer(Timer::FolderRecheck);
        self.cancel_superseded_install();
        self.request_check();
        self.start_polling();
    }

    // ----- upgrading -----

    /// Asks for a check of the pending folder (already in `Checking`), or queues the request
    /// while another check runs: at most one `visor-check` worker exists.
    pub(super) fn request_check(&mut self) {
        let Some(pending) = &self.pending else {
            return;
        };
        if self.check_running {
            self.check_queued = true;
            return;
        }
        self.check_running = true;
        self.actions.push_back(Action::CheckFolder {
            tag: pending.tag.clone(),
            folder: pending.folder.clone(),
        });
    }

    /// Cancels a running install whose tag is no longer the pending one.
    pub(super) fn cancel_superseded_install(&mut self) {
        let pending_tag = self.pending.as_ref().map(|p| p.tag.as_str());
        let Some(install) = self
            .install_running
            .as_mut()
            .filter(|i| !i.cancelled && Some(i.tag.as_str()) != pending_tag)
        else {
            return;
        };
        install.cancelled = true;
        let tag = install.tag.clone();
        self.log(
            LogLevel::Info,
            format!("upgrade: cancelling the install of {tag}: the core no longer accepts it"),
            vec![],
        );
        self.actions.push_back(Action::CancelInstall { tag });
    }

    pub(super) fn on_folder_checked(
        &mut self,
        now: Instant,
        tag: String,
        missing: bool,
        result: Result<Box<CheckedFolder>, String>,
    ) {
        self.check_running = false;
        if std::mem::take(&mut self.check_queued) {
            // A newer request came while this check ran; its answer may be stale.
            if self
                .pending
                .as_ref()
                .is_some_and(|p| p.state == FolderState::Checking)
            {
                self.request_check();
            }
            return;
        }
        if self.pending.as_ref().is_some_and(|p| p.tag == tag) {
            self.hook_accepted(now, &tag);
        }
        let waiting = self.phase() == Phase::UpgradeWait;
        let may_install = self.may_install(now, waiting);
        let Some(pending) = self.pending.as_mut().filter(|p| p.tag == tag) else {
            return;
        };
        if pending.state != FolderState::Checking {
            return;
        }
        match result {
            Ok(checked) => {
                self.on_folder_ready(now, checked, "run-config parsed, binaries report the tag")
            }
            Err(_) if missing && may_install => {
                pending.state = FolderState::Installing;
                let folder = pending.folder.clone();
                let record = self.remember_install(&tag);
                record.attempts += 1;
                let attempt = record.attempts;
                self.install_running = Some(RunningInstall {
                    tag: tag.clone(),
                    cancelled: false,
                });
                self.last_install_start = Some(now);
                let repository = format!(
                    "{}/{}",
                    self.config.auto_install.repository_owner, self.config.auto_install.repository
                );
                self.log(
                    LogLevel::Info,
                    format!("upgrade: installing {tag} from the GitHub release of {repository}"),
                    vec![
                        ("folder", folder.display().to_string()),
                        ("attempt", attempt.to_string()),
                    ],
                );
                self.actions.push_back(Action::StartInstall {
                    tag,
                    folder,
                    template: Box::new(self.run.clone()),
                });
            }
            Err(problem) => {
                let auto = &self.config.auto_install;
                let attempts = self.installs.get(&tag).map_or(0, |r| r.attempts);
                let retries_left = !auto.prefetch || attempts < PREFETCH_ATTEMPTS;
                let install_coming = missing && auto.enabled && retries_left;
                self.on_folder_not_ready(now, problem, install_coming)
            }
        }
    }

    /// The install record of `tag`, created (and the oldest forgotten) when new.
    pub(super) fn remember_install(&mut self, tag: &str) -> &mut InstallRecord {
        if !self.installs.contains_key(tag) {
            if self.install_order.len() >= REMEMBERED_TAGS {
                if let Some(oldest) = self.install_order.pop_front() {
                    self.installs.remove(&oldest);
                }
            }
            self.install_order.push_back(tag.to_string());
        }
        self.installs.entry(tag.to_string()).or_default()
    }

    /// Whether the pending folder, found missing, may be installed now: auto-install is on,
    /// prefetch allows it (or the binaries are already stopped for it), no other install
    /// runs, and the tag's backoff (and, before the block, the spacing between installs)
    /// has passed.
    pub(super) fn may_install(&self, now: Instant, waiting: bool) -> bool {
        let auto = &self.config.auto_install;
        let Some(pending) = &self.pending else {
            return false;
        };
        let record = self.installs.get(&pending.tag).cloned().unwrap_or_default();
        let spaced = waiting
            || self
                .last_install_start
                .is_none_or(|at| now.saturating_duration_since(at) >= INSTALL_SPACING);
        auto.enabled
            && (auto.prefetch || waiting)
            && self.install_running.is_none()
            && spaced
            && record.next_at.is_none_or(|at| now >= at)
            && (waiting || record.attempts < PREFETCH_ATTEMPTS)
    }

    pub(super) fn on_folder_ready(&mut self, now: Instant, checked: Box<CheckedFolder>, how: &str) {
        let Some(pending) = &mut self.pending else {
            return;
        };
        pending.state = FolderState::Ready(checked);
        let tag = pending.tag.clone();
        let folder = pending.folder.display().to_string();
        self.resolve_error(now, |message| message.starts_with("upgrade:"));
        self.log(
            LogLevel::Info,
            format!("upgrade: folder for {tag} is ready ({how})"),
            vec![("folder", folder)],
        );
        if self.phase() == Phase::UpgradeWait {
            self.advance_upgrade(now);
        }
    }

    /// Records why the folder is not ready and complains at the pace of the phase.
    /// `install_coming`: auto-install will still try to provide the folder before the block.
    pub(super) fn on_folder_not_ready(
        &mut self,
        now: Instant,
        problem: String,
        install_coming: bool,
    ) {
        let waiting = self.phase() == Phase::UpgradeWait;
        let Some(pending) = &mut self.pending else {
            return;
        };
        pending.state = FolderState::NotReady(problem.clone());
        let period = if waiting {
            FOLDER_ERROR_PERIOD
        } else {
            FOLDER_WARN_PERIOD
        };
        let complain = pending
            .last_complaint
            .is_none_or(|at| now.saturating_duration_since(at) >= period);
        if complain {
            pending.last_complaint = Some(now);
        }
        let tag = pending.tag.clone();
        let folder = pending.folder.display().to_string();
        if complain {
            if waiting {
                self.log(
                    LogLevel::Error,
                    format!("upgrade: binaries stopped for {tag} but its folder is not ready: {problem}; put the folder in place (visor prepare {tag}, which can also take it --from a file or a mirror, or by hand) and Visor will continue"),
                    vec![("folder", folder)],
                );
            } else if install_coming {
                self.log(
                    LogLevel::Info,
                    format!("upgrade: folder for accepted release {tag} is not ready ({problem}); auto-install will provide it"),
                    vec![("folder", folder)],
                );
            } else {
                self.log(
                    LogLevel::Warn,
                    format!("upgrade: folder for accepted release {tag} is not ready: {problem}; prepare it before the upgrade block (visor prepare {tag})"),
                    vec![("folder", folder)],
                );
            }
        }
        let recheck = if waiting {
            FOLDER_RECHECK_WAITING
        } else {
            FOLDER_RECHECK_PENDING
        };
        self.set_timer(Timer::FolderRecheck, later(now, recheck));
    }

    pub(super) fn on_install_finished(
        &mut self,
        now: Instant,
        tag: String,
        result: Result<Box<CheckedFolder>, String>,
    ) {
        if self.install_running.as_ref().is_some_and(|i| i.tag == tag) {
            self.install_running = None;
        }
        let backoff = {
            let record = self.remember_install(&tag);
            let backoff = INSTALL_BACKOFF
                .saturating_mul(1 << (record.attempts.saturating_sub(1)).min(10))
                .min(INSTALL_BACKOFF_MAX);
            if result.is_err() {
                record.next_at = Some(later(now, backoff));
            }
            backoff
        };
        let attempts = self.installs.get(&tag).map_or(0, |r| r.attempts);
        let current = self
            .pending
            .as_ref()
            .is_some_and(|p| p.tag == tag && p.state == FolderState::Installing);
        if !current {
            // A superseded install ended; the pending folder may have waited for the worker.
            self.log(
                LogLevel::Info,
                format!("upgrade: the install of {tag} ended; it is no longer needed"),
                vec![],
            );
            if let Some(p) = self
                .pending
                .as_mut()
                .filter(|p| matches!(p.state, FolderState::NotReady(_)))
            {
                p.state = FolderState::Checking;
                self.request_check();
            }
            return;
        }
        match result {
            Ok(checked) => self.on_folder_ready(now, checked, "installed and version checked"),
            Err(error) => {
                self.install_failures += 1;
                let gives_up = self.phase() != Phase::UpgradeWait && attempts >= PREFETCH_ATTEMPTS;
                let next = if gives_up {
                    "no more attempts before the upgrade block".to_string()
                } else {
                    format!("next attempt in {} s", backoff.as_secs())
                };
                self.log(
                    LogLevel::Error,
                    format!(
                        "upgrade: install of {tag} failed (attempt {attempts}): {error}; {next}"
                    ),
                    vec![],
                );
                self.on_folder_not_ready(now, error, !gives_up);
            }
        }
    }

    /// Orders the switch of `current` to `folder`, if it is still the folder `checked`
    /// recorded; `what` names the cause in the log (`upgrade`, `switch`).
    pub(super) fn switch_to(
        &mut self,
        what: &str,
        tag: &str,
        folder: PathBuf,
        checked: &CheckedFolder,
    ) {
        self.log(
            LogLevel::Info,
            format!("{what}: switching to {tag}"),
            vec![("folder", folder.display().to_string())],
        );
        let expect = Box::new(checked.fingerprint.clone());
        self.actions
            .push_back(Action::SwitchCurrent { folder, expect });
    }

    /// Moves a stopped upgrade forward as far as the folder, the backup and `beforeSwitch`
    /// allow, or checks the folder of a pending release again.
    pub(super) fn advance_upgrade(&mut self, now: Instant) {
        let waiting = self.phase() == Phase::UpgradeWait;
        let Some(pending) = &mut self.pending else {
            return;
        };
        let folder = pending.folder.clone();
        let tag = pending.tag.clone();
        match &pending.state {
            FolderState::Checking | FolderState::Installing => {}
            FolderState::NotReady(_) => {
                pending.state = FolderState::Checking;
                self.request_check();
            }
            FolderState::Ready(checked) if waiting => {
                let checked = checked.clone();
                if self.upgrade_backup_passed(now) && self.before_switch_passed() {
                    self.switch_to("upgrade", &tag, folder, &checked);
                }
            }
            FolderState::Ready(_) => {}
        }
    }

    pub(super) fn on_switched(&mut self, now: Instant, result: Result<(), SwitchError>) {
        if self.phase() == Phase::SwitchWait {
            self.on_switched_for_operator(now, result);
            return;
        }
        if self.phase() != Phase::UpgradeWait {
            return;
        }
        if let Err(SwitchError::FolderChanged(change)) = result {
            let Some(pending) = &mut self.pending else {
                return;
            };
            pending.state = FolderState::Checking;
            let tag = pending.tag.clone();
            self.log(
                LogLevel::Warn,
                format!("upgrade: the folder for {tag} changed since it was checked ({change}); checking it again before the switch"),
                vec![],
            );
            self.request_check();
            return;
        }
        if let Err(SwitchError::Failed(error)) = result {
            self.log(
                LogLevel::Error,
                format!(
                    "upgrade: cannot switch current: {error}; retrying in {} s",
                    SWITCH_RETRY.as_secs()
                ),
                vec![],
            );
            self.set_timer(Timer::FolderRecheck, later(now, SWITCH_RETRY));
            return;
        }
        let Some(pending) = self.pending.take() else {
            return;
        };
        let FolderState::Ready(checked) = pending.state else {
            return;
        };
        self.run = checked.run;
        self.first_start_height = Some(pending.height);
        self.previous_release = std::mem::replace(&mut self.running_release, pending.tag.clone());
        self.after_start = Some(hooks::AfterHook {
            reason: hooks::HookReason::Upgrade,
            release: pending.tag.clone(),
            height: Some(pending.height),
            folder: pending.folder.clone(),
            from: self.previous_release.clone(),
            backup: pending.backup.path().map(Path::to_path_buf),
        });
        self.restarts = 0;
        self.upgrades += 1;
        self.warned_ready_running = false;
        self.clear_timer(Timer::FolderRecheck);
        self.log(
            LogLevel::Info,
            format!(
                "upgrade: current now points at {}; starting the new binaries from block {}",
                pending.tag, pending.height
            ),
            vec![],
        );
        self.start(
            now,
            StartKind::Upgrade {
                height: pending.height,
            },
        );
    }
}
