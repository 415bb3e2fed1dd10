//! When a backup of the node's data (`[backup]` in config.toml) is taken and what its outcome
//! does; and what is known of `[backup]` for the reports.
//!
//! A backup is taken only while the binaries are stopped: at the upgrade block once the new
//! folder is ready, before `beforeSwitch` (which sees its path in `VISOR_BACKUP`), and at an
//! operator's `visor switch` once the old version stopped. A crash restart goes through
//! neither, so it never takes one. One backup runs at a time, on a `visor-backup` worker.
//!
//! A failure at the block with `onFailure = "stop"` keeps the binaries stopped and `current`
//! where it is, and the backup is tried again [`BACKUP_RETRY`] later, or at once on a reload
//! (a fixed `[backup]`, or `enabled = false`, lets the upgrade go on without waiting); with
//! `"continue"` it is a warning and the upgrade goes on. At a switch, a failure with
//! `"stop"` abandons the switch (the old version is started again; see `control`).
//!
//! `[backup]` is checked (`backup::validate`, on a worker) at start and on every reload while
//! it is enabled: each problem is an error at once, in the status line and the metrics, and
//! the node still starts; `onFailure` decides at the block.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{later, Action, Machine, Phase, Timer};
use crate::backup::{size, Reason, Report};
use crate::config::backup::{Backup, OnFailure};
use crate::config::LogLevel;

/// How long after a failed backup at the upgrade block (`onFailure = "stop"`) it is tried
/// again.
pub const BACKUP_RETRY: Duration = Duration::from_secs(60);

/// A backup to take.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupOrder {
    /// The release the node ran, and the one it moves to: the backup's name.
    pub from: String,
    pub to: String,
    pub reason: Reason,
    /// `[backup]` as it is in force when the backup starts.
    pub settings: Backup,
}

/// A backup that completed.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupDone {
    /// Its folder, `folder/FROM-to-TO-...`.
    pub path: PathBuf,
    /// Regular files and their bytes.
    pub files: u64,
    pub bytes: u64,
    pub duration: Duration,
    /// At least one file was cloned (`FICLONE`) rather than copied.
    pub cloned: bool,
    /// Older backups `keep` removed.
    pub removed: Vec<PathBuf>,
    /// Older backups `keep` could not remove, each with why.
    pub not_removed: Vec<String>,
}

/// Where the backup of one upgrade or switch is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) enum BackupGate {
    #[default]
    NotRun,
    Running {
        id: u64,
    },
    /// Failed with `onFailure = "stop"` at an upgrade: tried again from `retry_at` on.
    Failed {
        retry_at: Instant,
    },
    /// Taken (its path), or not needed (`None`: backups off, or a failure with
    /// `onFailure = "continue"`).
    Passed {
        path: Option<PathBuf>,
    },
}

impl BackupGate {
    /// The backup taken for this move, if one was.
    pub(super) fn path(&self) -> Option<&Path> {
        match self {
            BackupGate::Passed { path: Some(path) } => Some(path),
            _ => None,
        }
    }
}

/// The backup that runs now.
#[derive(Debug, Clone, PartialEq)]
struct RunningBackup {
    id: u64,
    from: String,
    to: String,
    reason: Reason,
    started: Instant,
    /// Visor is exiting and has told it to stop.
    cancelled: bool,
    /// Its last report, once one came.
    report: Option<Report>,
}

/// The last backup that completed.
#[derive(Debug, Clone, PartialEq)]
pub struct LastBackup {
    pub path: PathBuf,
    pub files: u64,
    pub bytes: u64,
    pub duration: Duration,
    /// When it completed.
    pub at: Instant,
}

/// The backups' part of the machine's state: one backup and one check at a time.
#[derive(Debug, Default)]
pub(super) struct BackupBook {
    next_id: u64,
    running: Option<RunningBackup>,
    /// The check of `[backup]` that runs (its id), and whether another is wanted after it
    /// (and whether that one's result is to be logged in full: start and reloads).
    check_running: Option<u64>,
    check_loud: bool,
    check_queued: Option<bool>,
    /// What the last check found.
    problems: Vec<String>,
    cost: Option<String>,
    /// The last backup that completed, and whether the last one that ended completed.
    last: Option<LastBackup>,
    last_ok: Option<bool>,
    /// Why the last backup failed, until one completes (or backups are turned off).
    failed: Option<String>,
}

/// What the reports say of the backups.
#[derive(Debug)]
pub struct BackupStatus<'a> {
    /// `[backup] enabled`.
    pub enabled: bool,
    pub running: Option<RunningBackupStatus<'a>>,
    /// What the last check of `[backup]` found.
    pub problems: &'a [String],
    /// What a backup will cost, when the last check could tell.
    pub cost: Option<&'a str>,
    /// Why the last backup failed, until one completes.
    pub failed: Option<&'a str>,
    pub last: Option<&'a LastBackup>,
    /// Whether the last backup that ended (not cancelled) completed; `None` before any.
    pub last_ok: Option<bool>,
}

/// The backup that runs now, for the reports.
#[derive(Debug)]
pub struct RunningBackupStatus<'a> {
    pub from: &'a str,
    pub to: &'a str,
    /// At an operator's switch (else at an upgrade block).
    pub switch: bool,
    pub started: Instant,
    pub report: Option<&'a Report>,
}

impl Machine {
    /// What the reports say of the backups.
    pub fn backup_status(&self) -> BackupStatus<'_> {
        let book = &self.backups;
        BackupStatus {
            enabled: self.config.backup.enabled,
            running: book.running.as_ref().map(|r| RunningBackupStatus {
                from: &r.from,
                to: &r.to,
                switch: r.reason == Reason::Switch,
                started: r.started,
                report: r.report.as_ref(),
            }),
            problems: &book.problems,
            cost: book.cost.as_deref(),
            failed: book.failed.as_deref(),
            last: book.last.as_ref(),
            last_ok: book.last_ok,
        }
    }

    /// The words after `upgrading to T: ` or `switching to T: ` while the backup of that move
    /// runs or waits for its next try.
    pub(super) fn backup_phase_words(&self) -> Option<String> {
        let gate = match self.phase() {
            Phase::UpgradeWait => self.pending.as_ref().map(|p| &p.backup)?,
            Phase::SwitchWait => self.switch_backup_gate()?,
            _ => return None,
        };
        match gate {
            BackupGate::Running { .. } => {
                let report = self
                    .backups
                    .running
                    .as_ref()
                    .and_then(|r| r.report.as_ref());
                Some(match report {
                    Some(report) => {
                        let left = report
                            .left
                            .map(|left| format!(", about {} s left", left.as_secs()))
                            .unwrap_or_default();
                        format!(
                            "backing up ({}/{}{left})",
                            size(report.bytes),
                            size(report.bytes_total)
                        )
                    }
                    None => "backing up".to_owned(),
                })
            }
            BackupGate::Failed { .. } => Some("backup failed, trying again".to_owned()),
            BackupGate::NotRun | BackupGate::Passed { .. } => None,
        }
    }

    /// Adds the backup's problems to the status line: why the last backup failed, and what
    /// the last check of `[backup]` found (the first problem, and how many more).
    pub(super) fn backup_status_suffix(&self, line: &mut String) {
        if let Some(failed) = &self.backups.failed {
            line.push_str(&format!("; backup failed: {failed}"));
        }
        if let Some(first) = self.backups.problems.first() {
            line.push_str(&format!("; backup problem: {first}"));
            let more = self.backups.problems.len() - 1;
            if more > 0 {
                line.push_str(&format!(" (and {more} more, see visor status)"));
            }
        }
    }

    // ----- the check of [backup] -----

    /// Checks `[backup]` on a worker when backups are on (`loud`: its result is logged in
    /// full, for a start or a reload); one check runs at a time, and none while a backup
    /// runs, so a request meanwhile is queued. With backups off there is nothing to check
    /// and nothing to report.
    pub(super) fn request_backup_check(&mut self, loud: bool) {
        if !self.config.backup.enabled {
            let book = &mut self.backups;
            book.problems.clear();
            book.cost = None;
            book.check_queued = None;
            self.resolve_error_now(is_backup_problem);
            return;
        }
        if self.backups.check_running.is_some() || self.backups.running.is_some() {
            let queued = self.backups.check_queued.unwrap_or(false);
            self.backups.check_queued = Some(queued || loud);
            return;
        }
        self.backups.next_id += 1;
        let id = self.backups.next_id;
        self.backups.check_running = Some(id);
        self.backups.check_loud = loud;
        self.actions.push_back(Action::CheckBackup {
            id,
            settings: Box::new(self.config.backup.clone()),
            upgrade_folders: self.config.upgrade_folders.clone(),
        });
    }

    /// Starts the check queued while another check or a backup ran, if any.
    fn run_queued_backup_check(&mut self) {
        if let Some(loud) = self.backups.check_queued.take() {
            self.request_backup_check(loud);
        }
    }

    pub(super) fn on_backup_checked(
        &mut self,
        now: Instant,
        id: u64,
        problems: Vec<String>,
        cost: Option<String>,
    ) {
        if self.backups.check_running != Some(id) {
            return;
        }
        self.backups.check_running = None;
        if let Some(queued_loud) = self.backups.check_queued.take() {
            // config.toml changed while this check ran: its answer may be stale. The next
            // check is logged in full if either was to be.
            let loud = queued_loud || self.backups.check_loud;
            self.request_backup_check(loud);
            return;
        }
        if !self.config.backup.enabled || self.exiting() {
            return;
        }
        let loud = self.backups.check_loud;
        let changed = problems != self.backups.problems;
        let had_problems = !self.backups.problems.is_empty();
        self.backups.problems = problems.clone();
        self.backups.cost = cost.clone();
        if problems.is_empty() {
            if had_problems {
                self.resolve_error(now, is_backup_problem);
            }
            if loud || had_problems {
                let cost = cost.map(|c| format!("; {c}")).unwrap_or_default();
                self.log(
                    LogLevel::Info,
                    format!("backup: [backup] checked, no problem found{cost}"),
                    vec![],
                );
            }
            return;
        }
        if loud || changed {
            for problem in problems {
                self.log(
                    LogLevel::Error,
                    format!(
                        "backup: {problem} (the node runs; a backup at the next upgrade or switch \
                         would fail)"
                    ),
                    vec![],
                );
            }
        }
    }

    /// Marks the last error resolved at the instant of this turn when `gone` says so.
    fn resolve_error_now(&mut self, gone: fn(&str) -> bool) {
        if let Some(now) = self.turn_at {
            self.resolve_error(now, gone);
        }
    }

    // ----- taking a backup -----

    /// Orders a backup for the move from the running release to `to`; its id.
    fn start_backup(&mut self, now: Instant, to: &str, reason: Reason) -> u64 {
        self.backups.next_id += 1;
        let id = self.backups.next_id;
        let from = self.running_release.clone();
        let settings = self.config.backup.clone();
        let what = match reason {
            Reason::Upgrade { .. } => "upgrade",
            Reason::Switch => "switch",
        };
        let folder = settings
            .folder
            .as_deref()
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        let paths: Vec<String> = settings
            .paths
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        self.log(
            LogLevel::Info,
            format!("{what}: backing up the node's data before the switch to {to}"),
            vec![("folder", folder), ("paths", paths.join(","))],
        );
        self.backups.running = Some(RunningBackup {
            id,
            from: from.clone(),
            to: to.to_owned(),
            reason,
            started: now,
            cancelled: false,
            report: None,
        });
        self.actions.push_back(Action::StartBackup {
            id,
            order: Box::new(BackupOrder {
                from,
                to: to.to_owned(),
                reason,
                settings,
            }),
        });
        id
    }

    /// Tells a running backup to stop (Visor is exiting); it removes its half-made folder,
    /// which the coordinator waits for.
    pub(super) fn cancel_backup(&mut self) {
        if let Some(running) = self.backups.running.as_mut().filter(|r| !r.cancelled) {
            running.cancelled = true;
            let id = running.id;
            self.log(
                LogLevel::Info,
                "backup: stopping the backup under way; its half-made copy is removed".into(),
                vec![],
            );
            self.actions.push_back(Action::CancelBackup { id });
        }
    }

    /// The backup gate of the pending upgrade, once the binaries stopped and the folder is
    /// ready: true when the upgrade may go on to `beforeSwitch`. Starts the backup when it is
    /// due (not taken yet, or its retry time has come).
    pub(super) fn upgrade_backup_passed(&mut self, now: Instant) -> bool {
        let Some(pending) = &mut self.pending else {
            return false;
        };
        match &pending.backup {
            BackupGate::Passed { .. } => return true,
            BackupGate::Running { .. } => return false,
            BackupGate::Failed { retry_at } if now < *retry_at => return false,
            BackupGate::Failed { .. } | BackupGate::NotRun => {}
        }
        if !self.config.backup.enabled {
            pending.backup = BackupGate::Passed { path: None };
            return true;
        }
        let (tag, height) = (pending.tag.clone(), pending.height);
        let id = self.start_backup(now, &tag, Reason::Upgrade { height });
        if let Some(pending) = &mut self.pending {
            pending.backup = BackupGate::Running { id };
        }
        false
    }

    /// The backup gate of an operator's switch, once the binaries stopped: true when the
    /// switch may go on to `beforeSwitch`.
    pub(super) fn switch_backup_passed(&mut self, now: Instant, tag: &str) -> bool {
        match self.switch_backup_gate() {
            Some(BackupGate::Passed { .. }) => return true,
            Some(BackupGate::NotRun) => {}
            _ => return false,
        }
        let gate = if self.config.backup.enabled {
            let id = self.start_backup(now, tag, Reason::Switch);
            let folder = self
                .config
                .backup
                .folder
                .as_deref()
                .map(|f| f.display().to_string())
                .unwrap_or_default();
            self.control_progress(format!(
                "backing up the node's data into {folder} before the switch"
            ));
            BackupGate::Running { id }
        } else {
            BackupGate::Passed { path: None }
        };
        let passed = matches!(gate, BackupGate::Passed { .. });
        self.set_switch_backup_gate(gate);
        passed
    }

    pub(super) fn on_backup_progress(&mut self, id: u64, report: Report) {
        let Some(running) = self.backups.running.as_mut().filter(|r| r.id == id) else {
            return;
        };
        let what = format!(
            "backup: {}-to-{}: {}",
            running.from,
            running.to,
            report.summary()
        );
        running.report = Some(report);
        self.log(LogLevel::Info, what, vec![]);
    }

    pub(super) fn on_backup_finished(
        &mut self,
        now: Instant,
        id: u64,
        result: Result<Box<BackupDone>, String>,
    ) {
        let Some(running) = self.backups.running.take_if(|r| r.id == id) else {
            return;
        };
        if running.cancelled {
            let how = match &result {
                Ok(done) => format!("it completed before it could stop: {}", done.path.display()),
                Err(e) => e.clone(),
            };
            self.log(LogLevel::Info, format!("backup: stopped: {how}"), vec![]);
            return;
        }
        match &result {
            Ok(done) => {
                self.backups.last = Some(LastBackup {
                    path: done.path.clone(),
                    files: done.files,
                    bytes: done.bytes,
                    duration: done.duration,
                    at: now,
                });
                self.backups.last_ok = Some(true);
                self.backups.failed = None;
                let how = if done.cloned { "cloned" } else { "copied" };
                self.log(
                    LogLevel::Info,
                    format!(
                        "backup: completed in {:.1} s: {} files, {} ({how})",
                        done.duration.as_secs_f64(),
                        done.files,
                        size(done.bytes)
                    ),
                    vec![("path", done.path.display().to_string())],
                );
                let keep = self.config.backup.keep;
                for removed in &done.removed {
                    self.log(
                        LogLevel::Info,
                        format!("backup: removed an older backup (keep = {keep})"),
                        vec![("path", removed.display().to_string())],
                    );
                }
                for why in &done.not_removed {
                    self.log(LogLevel::Warn, format!("backup: {why}"), vec![]);
                }
                // What the last check found may be out of date now that a backup worked.
                if !self.backups.problems.is_empty() && self.backups.check_queued.is_none() {
                    self.backups.check_queued = Some(false);
                }
            }
            Err(_) => self.backups.last_ok = Some(false),
        }
        if self.exiting() {
            return;
        }
        self.run_queued_backup_check();
        let upgrade = self
            .pending
            .as_ref()
            .is_some_and(|p| p.backup == BackupGate::Running { id });
        if upgrade {
            self.upgrade_backup_finished(now, result);
        } else if self.switch_backup_gate() == Some(&BackupGate::Running { id }) {
            self.switch_backup_finished(now, result);
        } else if let Err(error) = result {
            self.backups.failed = Some(error);
        }
    }

    fn upgrade_backup_finished(&mut self, now: Instant, result: Result<Box<BackupDone>, String>) {
        let Some(tag) = self.pending.as_ref().map(|p| p.tag.clone()) else {
            return;
        };
        let set_gate = |machine: &mut Machine, gate: BackupGate| {
            if let Some(pending) = &mut machine.pending {
                pending.backup = gate;
            }
        };
        match result {
            Ok(done) => {
                set_gate(
                    self,
                    BackupGate::Passed {
                        path: Some(done.path),
                    },
                );
                self.advance_upgrade(now);
            }
            Err(error) => match self.config.backup.on_failure {
                OnFailure::Stop => {
                    let retry_at = later(now, BACKUP_RETRY);
                    set_gate(self, BackupGate::Failed { retry_at });
                    self.set_timer(Timer::BackupRetry, retry_at);
                    self.log(
                        LogLevel::Error,
                        format!(
                            "upgrade: the backup before the switch to {tag} failed: {error}; the \
                             binaries stay stopped and current is not moved ([backup] onFailure \
                             = \"stop\"); trying again in {} s, or at once when config.toml is \
                             reloaded (fix what is named, or set [backup] enabled = false or \
                             onFailure = \"continue\" to go on without a backup)",
                            BACKUP_RETRY.as_secs()
                        ),
                        vec![],
                    );
                    self.backups.failed = Some(error);
                }
                OnFailure::Continue => {
                    self.log(
                        LogLevel::Warn,
                        format!(
                            "upgrade: the backup before the switch to {tag} failed: {error}; \
                             upgrading without a backup ([backup] onFailure = \"continue\")"
                        ),
                        vec![],
                    );
                    self.backups.failed = Some(error);
                    set_gate(self, BackupGate::Passed { path: None });
                    self.advance_upgrade(now);
                }
            },
        }
    }

    fn switch_backup_finished(&mut self, now: Instant, result: Result<Box<BackupDone>, String>) {
        let tag = self.switch_tag().unwrap_or("?").to_owned();
        match result {
            Ok(done) => {
                self.control_progress(format!("backup complete: {}", done.path.display()));
                self.set_switch_backup_gate(BackupGate::Passed {
                    path: Some(done.path),
                });
                self.advance_switch(now);
            }
            Err(error) => match self.config.backup.on_failure {
                OnFailure::Stop => {
                    self.backups.failed = Some(error.clone());
                    self.abandon_switch(
                        now,
                        &format!("the backup failed ([backup] onFailure = \"stop\"): {error}"),
                    );
                }
                OnFailure::Continue => {
                    self.log(
                        LogLevel::Warn,
                        format!(
                            "switch: the backup before the switch to {tag} failed: {error}; \
                             switching without a backup ([backup] onFailure = \"continue\")"
                        ),
                        vec![],
                    );
                    self.control_progress(format!(
                        "the backup failed: {error}; switching without a backup ([backup] \
                         onFailure = \"continue\")"
                    ));
                    self.backups.failed = Some(error);
                    self.set_switch_backup_gate(BackupGate::Passed { path: None });
                    self.advance_switch(now);
                }
            },
        }
    }

    /// config.toml was read again (changed or not): `[backup]` is checked again, backups
    /// turned off forget their failure, and a backup that failed at the block is tried again
    /// at once (or skipped, when backups are now off) instead of after the retry delay.
    pub(super) fn backup_reloaded(&mut self, now: Instant) {
        self.request_backup_check(true);
        if !self.config.backup.enabled {
            self.backups.failed = None;
        }
        let waiting = self.phase() == Phase::UpgradeWait;
        let Some(pending) = self
            .pending
            .as_mut()
            .filter(|p| matches!(p.backup, BackupGate::Failed { .. }))
        else {
            return;
        };
        pending.backup = BackupGate::Failed { retry_at: now };
        let tag = pending.tag.clone();
        self.clear_timer(Timer::BackupRetry);
        if waiting {
            let next = if self.config.backup.enabled {
                "trying the backup again now"
            } else {
                "backups are off now; going on without one"
            };
            self.log(
                LogLevel::Info,
                format!("upgrade: config.toml reloaded; {next} (upgrade to {tag})"),
                vec![],
            );
            self.advance_upgrade(now);
        }
    }
}

/// Whether a logged error is a problem found by the check of `[backup]`: those are resolved
/// only by a check that finds none (or backups turned off), not by the core's answer.
pub(super) fn is_backup_problem(message: &str) -> bool {
    message.starts_with("backup: ")
}
