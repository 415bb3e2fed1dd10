//! What `visor switch TAG` does without a running Visor between the folder check and the move
//! of `current`, as the running Visor does at an upgrade: the backup of `[backup]` (when
//! enabled), then the `beforeSwitch` hook (when configured), each in the foreground, under the
//! lock. A backup that fails stops the switch unless `[backup] onFailure = "continue"`; a hook
//! that fails stops it always. SIGINT, SIGTERM and SIGHUP set a cancel flag: a backup removes
//! its half-made folder, a hook is killed with its process group, and nothing is switched.
//!
//! It must not move `current` (the caller does, after comparing the folder's fingerprint) nor
//! decide anything for a running Visor.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::backup::{self, ErrorKind, Reason, Report, Request};
use crate::config::backup::OnFailure;
use crate::config::hooks::{program_problem, HookKind};
use crate::config::run_config::RunConfig;
use crate::config::Config;
use crate::home::{Home, ReleaseTag, RUN_CONFIG_FILE};
use crate::machine::Event;
use crate::supervise::hooks::{self, HookGroups, HookRun};

/// How often a wait for the hook looks at the cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// One offline switch's steps before `current` moves.
pub(super) struct PreSwitch<'a> {
    pub home: &'a Home,
    pub config: &'a Config,
    /// The release switched to.
    pub tag: &'a str,
    /// Its folder, checked.
    pub folder: &'a Path,
}

impl PreSwitch<'_> {
    /// Whether there is anything to do.
    pub fn has_steps(&self) -> bool {
        self.config.backup.enabled || self.config.hooks.before_switch.is_some()
    }

    /// The backup, then `beforeSwitch`. `Err` says why nothing may be switched (raw text; the
    /// caller escapes it and adds that `current` was not changed).
    pub fn run(&self, cancel: &Arc<AtomicBool>) -> Result<(), String> {
        let from = running_release(self.home);
        let backup = if self.config.backup.enabled {
            self.backup(from.as_ref(), cancel)?
        } else {
            None
        };
        if cancel.load(Ordering::Relaxed) {
            return Err(interrupted("after the backup"));
        }
        if let Some(command) = &self.config.hooks.before_switch {
            self.before_switch(command, from.as_ref().ok(), backup.as_deref(), cancel)?;
        }
        if cancel.load(Ordering::Relaxed) {
            return Err(interrupted("after hooks.beforeSwitch"));
        }
        Ok(())
    }

    /// The backup; its path when one was taken, `None` when it failed and `onFailure` lets
    /// the switch go on without it.
    fn backup(
        &self,
        from: Result<&String, &String>,
        cancel: &Arc<AtomicBool>,
    ) -> Result<Option<PathBuf>, String> {
        let settings = &self.config.backup;
        let folder = settings
            .folder
            .as_deref()
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        let attempt = backup_request(self.home, from, self.tag).and_then(|request| {
            super::out(&format!(
                "backup: copying {} into {folder} before the switch (a line every {} s)",
                list(&settings.paths),
                backup::REPORT_EVERY.as_secs()
            ));
            backup::run(&request, settings, &mut ToStdout, cancel).map_err(|e| {
                if e.kind() == ErrorKind::Cancelled {
                    interrupted(&format!("during the backup ({e})"))
                } else {
                    e.to_string()
                }
            })
        });
        match attempt {
            Ok(done) => {
                let how = if done.cloned_files > 0 && done.copied_files == 0 {
                    "cloned".to_owned()
                } else if done.cloned_files > 0 {
                    format!(
                        "{} files cloned, {} copied",
                        done.cloned_files, done.copied_files
                    )
                } else {
                    "copied".to_owned()
                };
                super::out(&format!(
                    "backup: {} complete: {} files, {} in {:.1} s ({how})",
                    done.path.display(),
                    done.files,
                    backup::size(done.bytes),
                    done.duration.as_secs_f64()
                ));
                for note in &done.notes {
                    super::out(&format!("backup: {note}"));
                }
                for removed in &done.removed {
                    super::out(&format!(
                        "backup: removed {} ([backup] keep = {})",
                        removed.display(),
                        settings.keep
                    ));
                }
                for (path, e) in &done.not_removed {
                    super::err(&format!(
                        "warning: backup: cannot remove the older backup {} ({e}); remove it \
                         by hand (rm -rf {})",
                        path.display(),
                        path.display()
                    ));
                }
                Ok(Some(done.path))
            }
            Err(why) if cancel.load(Ordering::Relaxed) => Err(why),
            Err(why) => match settings.on_failure {
                OnFailure::Stop => Err(format!(
                    "the backup failed: {why}; a switch does not go on without its backup \
                     while [backup] onFailure = \"stop\": fix the cause and run visor switch \
                     again, or, to switch without a backup, set onFailure = \"continue\" (or \
                     enabled = false) in [backup] of {}",
                    self.home.config_file().display()
                )),
                OnFailure::Continue => {
                    super::err(&format!(
                        "warning: the backup failed: {why}; switching without it, as [backup] \
                         onFailure = \"continue\""
                    ));
                    Ok(None)
                }
            },
        }
    }

    /// Runs `beforeSwitch` through the hook runner of `visor run` (own process group,
    /// `timeoutSeconds`, bounded output to the log, what it leaves stopped) and waits for it.
    fn before_switch(
        &self,
        command: &[String],
        from: Option<&String>,
        backup: Option<&Path>,
        cancel: &Arc<AtomicBool>,
    ) -> Result<(), String> {
        let kind = HookKind::BeforeSwitch;
        let from = from.cloned().unwrap_or_default();
        let mut env = vec![
            ("VISOR_EVENT".to_owned(), kind.key().to_owned()),
            ("VISOR_REASON".to_owned(), "switch".to_owned()),
            (
                "VISOR_HOME".to_owned(),
                self.home.root().display().to_string(),
            ),
            ("VISOR_RELEASE".to_owned(), self.tag.to_owned()),
            ("VISOR_FROM".to_owned(), from.clone()),
            ("VISOR_PREVIOUS_RELEASE".to_owned(), from),
            ("VISOR_FOLDER".to_owned(), self.folder.display().to_string()),
        ];
        if let Some(backup) = backup {
            env.push(("VISOR_BACKUP".to_owned(), backup.display().to_string()));
        }
        super::out(&format!(
            "hook beforeSwitch: running {} (timeoutSeconds = {})",
            command.join(" "),
            self.config.hooks.timeout.as_secs()
        ));
        let (events, finished) = crossbeam_channel::unbounded();
        let groups = HookGroups::default();
        let run = HookRun {
            id: 1,
            kind,
            command: command.to_vec(),
            env,
            timeout: self.config.hooks.timeout,
            stop_timeout: self.config.stop_signal_timeout,
        };
        let result = match hooks::start(run, groups.clone(), events) {
            Err(Event::HookFinished { result, .. }) => result,
            Err(_) => Err("the hook did not start".to_owned()),
            Ok(_thread) => {
                let mut killed = false;
                loop {
                    match finished.recv_timeout(CANCEL_POLL) {
                        Ok(Event::HookFinished { result, .. }) => break result,
                        Ok(_) => {}
                        Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                            if cancel.load(Ordering::Relaxed) && !killed {
                                groups.kill_all();
                                killed = true;
                            }
                        }
                        Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                            break Err("the hook's thread ended without a result".to_owned())
                        }
                    }
                }
            }
        };
        if cancel.load(Ordering::Relaxed) {
            return Err(interrupted("while hooks.beforeSwitch ran; it was killed"));
        }
        match result {
            Ok(()) => {
                super::out("hook beforeSwitch: finished");
                Ok(())
            }
            Err(why) => Err(format!(
                "hooks.beforeSwitch failed ({why}); fix the hook (its output is in the lines \
                 above) and run visor switch again, or remove beforeSwitch from [hooks] of {}",
                self.home.config_file().display()
            )),
        }
    }

    /// The problem of the `beforeSwitch` program, by the rule `run` applies at start (only a
    /// program it would accept ever runs).
    pub fn hook_problem(home: &Home, config: &Config) -> Option<String> {
        let program = config.hooks.before_switch.as_ref()?.first()?;
        program_problem(&home.config_file(), HookKind::BeforeSwitch.key(), program)
    }

    /// The line after a switch when `afterUpgrade` is configured: it does not run.
    pub fn after_upgrade_note(&self) -> Option<String> {
        self.config.hooks.after_upgrade.as_ref().map(|_| {
            format!(
                "hooks.afterUpgrade does not run: no Visor is running to see {} answer; run it \
                 by hand once the node runs {} if you need it",
                self.tag, self.tag
            )
        })
    }
}

/// The name in the run-config of the folder `current` points at (genesis's when `current`
/// is missing): the release the node leaves, as the running Visor names it.
fn running_release(home: &Home) -> Result<String, String> {
    let (folder, _) = home.current_folder()?;
    RunConfig::load(&folder.join(RUN_CONFIG_FILE))
        .map(|run| run.name)
        .map_err(|problems| problems.join("; "))
}

/// The backup's request: the release left (the run-config's name, else the name of
/// `current`'s folder when that is a valid tag) and the one switched to.
fn backup_request(
    home: &Home,
    from: Result<&String, &String>,
    tag: &str,
) -> Result<Request, String> {
    let from = match from {
        Ok(name) => ReleaseTag::parse(name).or_else(|problem| {
            home.current_folder()
                .ok()
                .and_then(|(folder, _)| {
                    folder.file_name().map(|n| n.to_string_lossy().into_owned())
                })
                .and_then(|name| ReleaseTag::parse(&name).ok())
                .ok_or(problem)
        }),
        Err(problem) => Err(problem.clone()),
    }
    .map_err(|problem| {
        format!("cannot name the backup after the release current runs: {problem}")
    })?;
    let to = ReleaseTag::parse(tag)?;
    Ok(Request {
        from,
        to,
        reason: Reason::Switch,
    })
}

fn interrupted(when: &str) -> String {
    format!("interrupted by a signal {when}")
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Progress lines on standard output.
struct ToStdout;

impl backup::Progress for ToStdout {
    fn report(&mut self, report: &Report) {
        super::out(&format!("backup: {}", report.summary()));
    }

    fn note(&mut self, note: &str) {
        super::out(&format!("backup: {note}"));
    }
}
