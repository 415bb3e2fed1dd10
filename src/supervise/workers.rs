//! One-shot worker threads for slow checks the coordinator must not block on: the data
//! node's latest history segment before a restart, an upgrade folder's readiness, an
//! install, a backup (`visor-backup`) and the check of `[backup]`. Each reports its result as
//! a state-machine event and ends. When the thread cannot
//! be started, the function returns the event that says so, for the coordinator to feed the
//! machine: a worker that never starts must not leave the machine waiting for it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::backup::{self, Report};
use crate::config::backup::Backup;
use crate::home::{Home, ReleaseTag};
use crate::install::ToLog;
use crate::machine::{BackupDone, BackupOrder, Event};
use crate::node::commands::parse_latest_segment;
use crate::node::fingerprint::CheckedFolder;
use crate::node::folder_check::{check_upgrade_folder, run_captured};
use crate::ops::log;

/// How long the data node may take to name its latest history segment.
pub const SEGMENT_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts `work` on a thread named `name`; on failure, the error text.
fn spawn_worker(
    name: &str,
    work: impl FnOnce() -> Event + Send + 'static,
    events: Sender<Event>,
) -> Result<JoinHandle<()>, String> {
    std::thread::Builder::new()
        .name(name.to_string())
        .stack_size(crate::process::PARSER_STACK)
        .spawn(move || {
            let _ = events.send(work());
        })
        .map_err(|e| {
            format!("cannot start the {name} thread ({e}); the system is out of threads or memory")
        })
}

/// Asks the data node for its latest history segment; on failure to start, the event.
pub fn query_segment(program: PathBuf, args: Vec<String>, events: Sender<Event>) -> Option<Event> {
    spawn_worker(
        "visor-segment",
        move || {
            let words: Vec<&str> = args.iter().map(String::as_str).collect();
            let result = run_captured(&program, &words, SEGMENT_TIMEOUT)
                .and_then(|out| parse_latest_segment(&out.stdout, &out.stderr));
            Event::SegmentQueried(result)
        },
        events,
    )
    .err()
    .map(|e| Event::SegmentQueried(Err(e)))
}

/// Checks an upgrade folder (for a pending upgrade, or for an operator's switch when
/// `for_switch`); on failure to start, the event.
pub fn check_folder(
    tag: String,
    folder: PathBuf,
    for_switch: bool,
    events: Sender<Event>,
) -> Option<Event> {
    let event = move |tag: String, missing: bool, result: Result<Box<CheckedFolder>, String>| {
        if for_switch {
            Event::SwitchFolderChecked { tag, result }
        } else {
            Event::FolderChecked {
                tag,
                missing,
                result,
            }
        }
    };
    let failed_tag = tag.clone();
    spawn_worker(
        "visor-check",
        move || {
            let missing = std::fs::symlink_metadata(&folder).is_err();
            let result = check_upgrade_folder(&tag, &folder)
                .and_then(|run| CheckedFolder::record(&folder, run))
                .map(Box::new);
            event(tag, missing, result)
        },
        events,
    )
    .err()
    .map(|e| event(failed_tag, false, Err(e)))
}

/// Reads `folder/run-config.toml` again and checks its binaries, for an operator's restart;
/// on failure to start, the event.
pub fn read_run_config(folder: PathBuf, events: Sender<Event>) -> Option<Event> {
    let read = move || {
        crate::node::folder_check::load_startable(&folder)
            .map(Box::new)
            .map_err(|problems| problems.join("; "))
    };
    spawn_worker("visor-check", move || Event::RunConfigRead(read()), events)
        .err()
        .map(|e| Event::RunConfigRead(Err(e)))
}

/// Installs a release on the `visor-install` thread; progress lines go to the log, the result
/// comes back as [`Event::InstallFinished`]. Setting `cancel` stops it soon, cleaned up.
pub fn install(
    request: crate::install::InstallRequest,
    cancel: Arc<AtomicBool>,
    events: Sender<Event>,
) -> Result<JoinHandle<()>, Event> {
    let tag = request.tag.clone();
    spawn_worker(
        "visor-install",
        move || {
            let folder = request.folder.clone();
            let result = crate::install::install_cancellable(&request, &cancel, &mut ToLog)
                .map_err(|e| e.to_string())
                .and_then(|run| CheckedFolder::record(&folder, run))
                .map(Box::new);
            Event::InstallFinished {
                tag: request.tag,
                result,
            }
        },
        events,
    )
    .map_err(|e| Event::InstallFinished {
        tag,
        result: Err(e),
    })
}

/// How many of a backup's notes (entries skipped) are logged; the rest are counted.
const NOTES_LOGGED: usize = 20;

/// Where a backup's progress goes: each report to the machine as an event, each note to the
/// log (the first [`NOTES_LOGGED`]).
struct ToMachine {
    id: u64,
    events: Sender<Event>,
    notes: usize,
}

impl backup::Progress for ToMachine {
    fn report(&mut self, report: &Report) {
        let _ = self.events.send(Event::BackupProgress {
            id: self.id,
            report: report.clone(),
        });
    }

    fn note(&mut self, note: &str) {
        self.notes += 1;
        if self.notes <= NOTES_LOGGED {
            log::info(&format!("backup: {note}"), &[]);
        } else if self.notes == NOTES_LOGGED + 1 {
            log::info(
                &format!("backup: more entries skipped; only the first {NOTES_LOGGED} are named"),
                &[],
            );
        }
    }
}

/// A release name as a backup's name takes it: the tag itself, or, for a run-config `name`
/// that is not a release tag (spaces, a leading dot...), the same with every character a tag
/// may not hold made `_`, so that such a name never stops a backup.
fn backup_tag(name: &str) -> ReleaseTag {
    ReleaseTag::parse(name).unwrap_or_else(|_| {
        let mut safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .take(127)
            .collect();
        if !safe.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            safe.insert(0, 'r');
        }
        ReleaseTag::parse(&safe)
            .unwrap_or_else(|_| ReleaseTag::parse("release").expect("a fixed valid tag"))
    })
}

/// Takes a backup on the `visor-backup` thread: reports come back as
/// [`Event::BackupProgress`], the end as [`Event::BackupFinished`]. Setting `cancel` stops it
/// soon; it removes its half-made folder first.
pub fn backup(
    id: u64,
    order: BackupOrder,
    cancel: Arc<AtomicBool>,
    events: Sender<Event>,
) -> Result<JoinHandle<()>, Event> {
    let sink = events.clone();
    spawn_worker(
        "visor-backup",
        move || {
            let request = backup::Request {
                from: backup_tag(&order.from),
                to: backup_tag(&order.to),
                reason: order.reason,
            };
            let mut progress = ToMachine {
                id,
                events: sink,
                notes: 0,
            };
            let result = backup::run(&request, &order.settings, &mut progress, &cancel)
                .map(|done| {
                    Box::new(BackupDone {
                        path: done.path,
                        files: done.files,
                        bytes: done.bytes,
                        duration: done.duration,
                        cloned: done.cloned,
                        removed: done.removed,
                        not_removed: done
                            .not_removed
                            .into_iter()
                            .map(|(path, e)| {
                                format!(
                                    "cannot remove the older backup {} ({e}); remove it by hand",
                                    path.display()
                                )
                            })
                            .collect(),
                    })
                })
                .map_err(|e| e.to_string());
            Event::BackupFinished { id, result }
        },
        events,
    )
    .map_err(|e| Event::BackupFinished { id, result: Err(e) })
}

/// Checks `[backup]` (`backup::validate`: the folder, the paths, room for a copy, whether
/// clones work) on a `visor-check` thread, which may walk the backed-up trees; on failure to
/// start, the event.
pub fn check_backup(
    id: u64,
    home: Home,
    settings: Backup,
    upgrade_folders: BTreeMap<String, String>,
    events: Sender<Event>,
) -> Option<Event> {
    spawn_worker(
        "visor-check",
        move || {
            let validation = backup::validate(&settings, &home, &upgrade_folders);
            let cost = (!validation.paths.is_empty()).then(|| validation.cost());
            Event::BackupChecked {
                id,
                problems: validation.problems.into_iter().map(|p| p.message).collect(),
                cost,
            }
        },
        events,
    )
    .err()
    .map(|e| Event::BackupChecked {
        id,
        problems: vec![e],
        cost: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_release_name_can_name_a_backup() {
        assert_eq!(backup_tag("v1.2.3").as_str(), "v1.2.3");
        assert_eq!(backup_tag("v1.2 beta").as_str(), "v1.2_beta");
        assert_eq!(backup_tag(".hidden/x").as_str(), "r.hidden_x");
        assert_eq!(backup_tag("").as_str(), "r");
        assert_eq!(backup_tag(&"é".repeat(200)).as_str().len(), 128);
    }
}
