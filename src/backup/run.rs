//! One backup, start to end: the settings checked, the paths measured, the folder made when
//! missing (0700), a half-made `.visor-tmp-backup-PID-SEQ` built in it (free space checked
//! first where clones do not work), every change synced to disk (`syncfs`), the rename to its
//! final name (no-replace) and the folder synced, then `keep`. On cancel, time-out or any
//! error the half-made folder is removed and the error says so.
//!
//! It must not decide when a backup is taken or what a failure means for the upgrade (the
//! machine's), nor log (progress goes to the caller's [`Progress`]).

use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::error::{BackupError, ErrorKind};
use super::keep::keep_newest;
use super::name::{BackupName, Reason};
use super::progress::{size, Meter, Progress, REPORT_EVERY};
use super::sys;
use super::temp::{remove_tree, temp_name};
use super::tree::{measure, Limits, MeasureStop, Totals, Walker};
use super::validate::{folder_problems, path_problem, probe_clone_at, settings_problems, RESERVE};
use crate::config::backup::Backup;
use crate::home::ReleaseTag;

/// What to back up for: the releases and the reason, which make the backup's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub from: ReleaseTag,
    pub to: ReleaseTag,
    pub reason: Reason,
}

/// A backup that completed.
#[derive(Debug)]
pub struct Completed {
    /// Its folder: `folder/FROM-to-TO-...`.
    pub path: PathBuf,
    /// Regular files (hard links included) and their bytes.
    pub files: u64,
    pub bytes: u64,
    /// From the start to the rename.
    pub duration: Duration,
    /// Whether clones were used (at least one file cloned).
    pub cloned: bool,
    pub cloned_files: u64,
    pub copied_files: u64,
    /// Entries skipped (sockets, devices) and other remarks.
    pub notes: Vec<String>,
    /// Older backups removed by `keep`.
    pub removed: Vec<PathBuf>,
    /// Older backups `keep` could not remove, with why.
    pub not_removed: Vec<(PathBuf, io::Error)>,
}

/// Takes a backup of `settings.paths` into `settings.folder` (whether `settings.enabled` is
/// the caller's business), reporting every [`REPORT_EVERY`]; stops when `cancel` is set or
/// `timeoutSeconds` runs out.
pub fn run(
    request: &Request,
    settings: &Backup,
    progress: &mut dyn Progress,
    cancel: &AtomicBool,
) -> Result<Completed, BackupError> {
    run_with(request, settings, progress, cancel, REPORT_EVERY)
}

/// [`run`] with the report interval given (tests).
pub(super) fn run_with(
    request: &Request,
    settings: &Backup,
    progress: &mut dyn Progress,
    cancel: &AtomicBool,
    every: Duration,
) -> Result<Completed, BackupError> {
    let started = Instant::now();
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let problems = settings_problems(settings, None);
    let folder = match (problems.is_empty(), settings.folder.as_deref()) {
        (true, Some(folder)) => folder,
        _ => {
            let all: Vec<String> = problems.into_iter().map(|p| p.message).collect();
            return Err(BackupError::new(ErrorKind::Settings, all.join("; ")));
        }
    };
    let limits = Limits {
        cancel,
        deadline: started
            .checked_add(settings.timeout)
            .unwrap_or(started + Duration::from_secs(86_400 * 365 * 10)),
        timeout: settings.timeout,
        folder,
    };
    let mut totals = Vec::with_capacity(settings.paths.len());
    for (index, path) in settings.paths.iter().enumerate() {
        // Missing, or a link (which would be copied as a link, leaving its target out).
        if let Some(problem) = path_problem(&format!("backup.paths[{index}]"), path) {
            return Err(BackupError::new(ErrorKind::Settings, problem.message));
        }
        totals.push(measure(path, Some(&limits)).map_err(|stop| match stop {
            MeasureStop::Halted(error) => error,
            MeasureStop::Io(at, e) => BackupError::new(
                ErrorKind::Io,
                format!(
                    "backup: cannot read {} ({e}); make it readable by the user Visor runs as \
                     ({}), or leave it out of [backup] paths",
                    at.display(),
                    super::tree::user()
                ),
            ),
        })?);
    }
    make_folder(folder)?;
    let folder_fd = sys::open_folder(folder).map_err(|e| io_error("open the folder", folder, e))?;
    let temp = temp_name(false);
    let temp_path = folder.join(&temp);
    let temp_c = sys::c_string(temp.as_ref()).map_err(|e| io_error("name", &temp_path, e))?;
    sys::make_folder_at(folder_fd.as_fd(), &temp_c, 0o700)
        .map_err(|e| io_error("create the folder", &temp_path, e))?;
    let name = BackupName {
        from: request.from.clone(),
        to: request.to.clone(),
        reason: request.reason,
        started: started_unix,
    }
    .format();
    let build = Build {
        settings,
        folder,
        folder_fd: folder_fd.as_fd(),
        temp: &temp_c,
        temp_path: &temp_path,
        totals: &totals,
        limits: &limits,
        started,
        every,
    };
    let made = match build.run(progress, &name) {
        Ok(made) => made,
        Err(error) => {
            let sentence = match remove_tree(&temp_path) {
                Ok(()) => format!("its half-made copy {} was removed", temp_path.display()),
                Err(e) => format!(
                    "its half-made copy {} could not be removed ({e}); remove it (rm -rf {}), \
                     or let the next start of Visor remove it",
                    temp_path.display(),
                    temp_path.display()
                ),
            };
            return Err(error.and(&sentence));
        }
    };
    let duration = started.elapsed();
    let path = folder.join(&name);
    let mut notes = made.notes;
    // The name is in place; a failure to sync the folder only makes it less durable.
    if let Err(e) = folder_fd
        .try_clone()
        .map(fs::File::from)
        .and_then(|f| f.sync_all())
    {
        notes.push(format!("could not sync {} ({e})", folder.display()));
    }
    let (removed, not_removed) = match keep_newest(folder, settings.keep, &path) {
        Ok(pruned) => (pruned.removed, pruned.failed),
        Err(e) => (Vec::new(), vec![(folder.to_path_buf(), e)]),
    };
    Ok(Completed {
        path,
        files: made.files,
        bytes: made.bytes,
        duration,
        cloned: made.cloned > 0,
        cloned_files: made.cloned,
        copied_files: made.copied,
        notes,
        removed,
        not_removed,
    })
}

/// What the build made.
struct Made {
    files: u64,
    bytes: u64,
    cloned: u64,
    copied: u64,
    notes: Vec<String>,
}

/// The steps between the half-made folder's creation and its rename.
struct Build<'a> {
    settings: &'a Backup,
    folder: &'a Path,
    folder_fd: BorrowedFd<'a>,
    temp: &'a std::ffi::CStr,
    temp_path: &'a Path,
    totals: &'a [Totals],
    limits: &'a Limits<'a>,
    started: Instant,
    every: Duration,
}

impl Build<'_> {
    fn run(&self, progress: &mut dyn Progress, name: &str) -> Result<Made, BackupError> {
        let root = sys::open_folder_at(self.folder_fd, self.temp)
            .map_err(|e| io_error("open the folder", self.temp_path, e))?;
        // Whatever the umask, the backup's root is the owner's only.
        sys::chmod_fd(root.as_fd(), 0o700)
            .map_err(|e| io_error("set the mode of", self.temp_path, e))?;
        self.check_space(root.as_fd())?;
        let folder_st =
            sys::stat_fd(self.folder_fd).map_err(|e| io_error("look at", self.folder, e))?;
        let root_st =
            sys::stat_fd(root.as_fd()).map_err(|e| io_error("look at", self.temp_path, e))?;
        let files: u64 = self.totals.iter().map(|t| t.files).sum();
        let bytes: u64 = self.totals.iter().map(|t| t.bytes).sum();
        let meter = Meter::new(self.started, self.every, files, bytes);
        let avoid = vec![
            (folder_st.st_dev, folder_st.st_ino),
            (root_st.st_dev, root_st.st_ino),
        ];
        let mut walker = Walker::new(
            root.as_fd(),
            self.temp_path,
            avoid,
            meter,
            progress,
            self.limits,
        );
        for path in &self.settings.paths {
            walker.copy_path(path)?;
        }
        walker.finish()?;
        let made = Made {
            files: walker.meter.files,
            bytes: walker.meter.bytes,
            cloned: walker.made.cloned,
            copied: walker.made.copied + walker.made.linked,
            notes: std::mem::take(&mut walker.made.notes),
        };
        drop(walker);
        sys::sync_file_system(root.as_fd())
            .map_err(|e| io_error("sync to disk", self.temp_path, e))?;
        self.limits
            .check(|| "every file, before the rename".to_owned())?;
        let final_c = sys::c_string(name.as_ref())
            .map_err(|e| io_error("name", &self.folder.join(name), e))?;
        sys::rename_no_replace(self.folder_fd, self.temp, &final_c).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                BackupError::new(
                    ErrorKind::Io,
                    format!(
                        "backup: {} already exists (a backup for the same move started in the \
                         same second); try again",
                        self.folder.join(name).display()
                    ),
                )
            } else {
                io_error("rename into place", &self.folder.join(name), e)
            }
        })?;
        Ok(made)
    }

    /// Where clones do not work from a path's file system, its blocks plus [`RESERVE`] must be
    /// free before anything is copied.
    fn check_space(&self, root: BorrowedFd) -> Result<(), BackupError> {
        let mut copy = 0u64;
        for (path, totals) in self.settings.paths.iter().zip(self.totals) {
            if totals.allocated == 0 {
                continue;
            }
            let clones = match &totals.sample {
                Some(sample) => {
                    probe_clone_at(sample, root).map_err(|e| io_error("try a clone of", path, e))?
                }
                None => false,
            };
            if !clones {
                copy = copy.saturating_add(totals.allocated);
            }
        }
        if copy == 0 {
            return Ok(());
        }
        let free = sys::free_bytes(self.folder).map_err(|e| io_error("look at", self.folder, e))?;
        if copy.saturating_add(RESERVE) > free {
            return Err(BackupError::new(
                ErrorKind::NoSpace,
                format!(
                    "backup: {} has {} free, not enough for a copy of the backed-up paths ({} \
                     plus a {} reserve); free space there (remove old backups or lower \
                     [backup] keep), or choose a folder with room",
                    self.folder.display(),
                    size(free),
                    size(copy),
                    size(RESERVE)
                ),
            ));
        }
        Ok(())
    }
}

/// Makes the folder (0700) when it is missing and its parent exists; the problems of
/// `validate` otherwise.
fn make_folder(folder: &Path) -> Result<(), BackupError> {
    let mut problems = Vec::new();
    let writable_at = folder_problems(folder, &mut problems);
    if !problems.is_empty() {
        let all: Vec<String> = problems.into_iter().map(|p| p.message).collect();
        return Err(BackupError::new(ErrorKind::Settings, all.join("; ")));
    }
    if writable_at.as_deref() == Some(folder) {
        return Ok(());
    }
    match fs::create_dir(folder) {
        Ok(()) => fs::set_permissions(folder, fs::Permissions::from_mode(0o700))
            .map_err(|e| io_error("set the mode of", folder, e)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_error("create the folder", folder, e)),
    }
}

/// An error on the backup's side, with the path.
fn io_error(doing: &str, path: &Path, error: io::Error) -> BackupError {
    let (kind, todo) = match error.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => (
            ErrorKind::NoSpace,
            "free space there (remove old backups or lower [backup] keep), or choose a folder \
             with room",
        ),
        _ => (ErrorKind::Io, "check the folder and its file system"),
    };
    BackupError::new(
        kind,
        format!(
            "backup: cannot {doing} {} ({error}); {todo}",
            path.display()
        ),
    )
}
