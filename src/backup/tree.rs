//! Walking the backed-up paths: `measure` (files, bytes, blocks, a sample file for the clone
//! probe) and the `Walker` that recreates each path below the backup's root at its absolute
//! location, entry by entry through folder descriptors (`*at` calls with `O_NOFOLLOW`): folders
//! (their modes, owners and times set once their contents are in), regular files (data by
//! `copy`, hard links kept as links), symbolic links recreated and never followed, FIFOs made
//! anew; sockets and devices are skipped with a note. Cancel and time-out are checked before
//! every entry and after every chunk.
//!
//! It must not decide where the backup goes or what it is called (`run`'s), nor look outside
//! the paths it is given and the root it writes below.

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString, OsStr};
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::copy::{read_ahead, DataCopier, Method, Stop, READ_AHEAD_FILES};
use super::error::{BackupError, ErrorKind};
use super::progress::{size, Meter, Progress};
use super::sys::{self, Stat};

/// When a backup must stop: the cancel flag, and the deadline from `timeoutSeconds`.
pub(super) struct Limits<'a> {
    pub(super) cancel: &'a AtomicBool,
    pub(super) deadline: Instant,
    pub(super) timeout: Duration,
    /// The backup folder, for messages.
    pub(super) folder: &'a Path,
}

impl Limits<'_> {
    /// An error when the backup must stop now; `done` describes what was done.
    pub(super) fn check(&self, done: impl FnOnce() -> String) -> Result<(), BackupError> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(BackupError::new(
                ErrorKind::Cancelled,
                format!(
                    "backup into {} cancelled (a stop was asked for) after {}",
                    self.folder.display(),
                    done()
                ),
            ));
        }
        if Instant::now() >= self.deadline {
            return Err(BackupError::new(
                ErrorKind::TimedOut,
                format!(
                    "backup into {} did not complete within [backup] timeoutSeconds = {} ({}); \
                     raise timeoutSeconds, or put the folder on a file system that can clone \
                     the backed-up paths (XFS with reflink, btrfs), where a backup takes seconds",
                    self.folder.display(),
                    self.timeout.as_secs(),
                    done()
                ),
            ));
        }
        Ok(())
    }
}

/// What [`measure`] found below one path.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Totals {
    /// Regular files (every name of a hard-linked file).
    pub(super) files: u64,
    /// Their sizes (a hard-linked file once).
    pub(super) bytes: u64,
    /// The blocks they occupy, in bytes (what a copy needs; less than `bytes` when sparse).
    pub(super) allocated: u64,
    /// A non-empty regular file, for the clone probe.
    pub(super) sample: Option<PathBuf>,
}

/// Why [`measure`] stopped.
#[derive(Debug)]
pub(super) enum MeasureStop {
    /// A path could not be looked at.
    Io(PathBuf, io::Error),
    /// Cancel or time-out.
    Halted(BackupError),
}

/// Counts the regular files below `path` (itself included) without following links.
pub(super) fn measure(path: &Path, limits: Option<&Limits>) -> Result<Totals, MeasureStop> {
    let mut totals = Totals::default();
    let mut seen = HashSet::new();
    let mut add = |totals: &mut Totals, path: &Path, meta: &fs::Metadata| {
        if !meta.file_type().is_file() {
            return;
        }
        totals.files += 1;
        if meta.nlink() > 1 && !seen.insert((meta.dev(), meta.ino())) {
            return;
        }
        totals.bytes += meta.len();
        totals.allocated += meta.blocks() * 512;
        if totals.sample.is_none() && meta.len() > 0 {
            totals.sample = Some(path.to_path_buf());
        }
    };
    let top = fs::symlink_metadata(path).map_err(|e| MeasureStop::Io(path.to_path_buf(), e))?;
    add(&mut totals, path, &top);
    if !top.is_dir() {
        return Ok(totals);
    }
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Some(limits) = limits {
            limits
                .check(|| format!("measuring {} files", totals.files))
                .map_err(MeasureStop::Halted)?;
        }
        let entries = fs::read_dir(&dir).map_err(|e| MeasureStop::Io(dir.clone(), e))?;
        for entry in entries {
            let entry = entry.map_err(|e| MeasureStop::Io(dir.clone(), e))?;
            let path = entry.path();
            let meta = entry
                .metadata()
                .map_err(|e| MeasureStop::Io(path.clone(), e))?;
            if meta.is_dir() {
                stack.push(path);
            } else {
                add(&mut totals, &path, &meta);
            }
        }
    }
    Ok(totals)
}

/// Counts of what a walk made.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Made {
    pub(super) cloned: u64,
    pub(super) copied: u64,
    pub(super) linked: u64,
    pub(super) notes: Vec<String>,
}

/// Recreates paths below a root folder.
pub(super) struct Walker<'a> {
    pub(super) data: DataCopier,
    pub(super) meter: Meter,
    pub(super) made: Made,
    progress: &'a mut dyn Progress,
    limits: &'a Limits<'a>,
    root: BorrowedFd<'a>,
    root_path: &'a Path,
    /// Folders never entered: the backup folder and the root (device, inode).
    avoid: Vec<(u64, u64)>,
    /// Hard-linked files already copied: (device, inode) to their path below the root.
    links: HashMap<(u64, u64), CString>,
    /// Folders made for the ancestors of the paths, with the source's `stat`, set last.
    ancestors: Vec<(CString, Stat)>,
}

/// Where an error happened, for its message.
enum Side<'p> {
    Source(&'p Path),
    Copy(&'p Path),
}

impl<'a> Walker<'a> {
    pub(super) fn new(
        root: BorrowedFd<'a>,
        root_path: &'a Path,
        avoid: Vec<(u64, u64)>,
        meter: Meter,
        progress: &'a mut dyn Progress,
        limits: &'a Limits<'a>,
    ) -> Self {
        Walker {
            data: DataCopier::default(),
            meter,
            made: Made::default(),
            progress,
            limits,
            root,
            root_path,
            avoid,
            links: HashMap::new(),
            ancestors: Vec::new(),
        }
    }

    /// The message of an error on a path, with what to do.
    fn fail(&self, side: Side, doing: &str, error: io::Error) -> BackupError {
        let (kind, path, todo) = match side {
            Side::Source(path) => {
                let todo = match error.raw_os_error() {
                    Some(libc::ENOENT) => "the node must be stopped during a backup; check that \
                                          nothing else changes the backed-up paths"
                        .to_owned(),
                    Some(libc::EACCES) | Some(libc::EPERM) => format!(
                        "make it readable by the user Visor runs as ({}), or leave it out of \
                         [backup] paths",
                        user()
                    ),
                    _ => {
                        "check the file system, or leave the path out of [backup] paths".to_owned()
                    }
                };
                (ErrorKind::Io, path, todo)
            }
            Side::Copy(path) => match error.raw_os_error() {
                Some(libc::ENOSPC) | Some(libc::EDQUOT) => (
                    ErrorKind::NoSpace,
                    path,
                    format!(
                        "free space in {} (remove old backups or lower [backup] keep), or choose \
                         a folder with room",
                        self.limits.folder.display()
                    ),
                ),
                _ => (
                    ErrorKind::Io,
                    path,
                    format!("check {} and its file system", self.limits.folder.display()),
                ),
            },
        };
        BackupError::new(
            kind,
            format!(
                "backup: cannot {doing} {} ({error}); {todo}",
                path.display()
            ),
        )
    }

    /// Cancel and time-out, then a report when one is due.
    fn step(&mut self) -> Result<(), BackupError> {
        let meter = &self.meter;
        self.limits.check(|| done(meter))?;
        self.meter.tick(Instant::now(), self.progress);
        Ok(())
    }

    /// Recreates `path` (absolute) at the same place below the root.
    pub(super) fn copy_path(&mut self, path: &Path) -> Result<(), BackupError> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(BackupError::new(
                ErrorKind::Settings,
                format!(
                    "backup: {} names no file or folder; give [backup] paths such as \
                     \"/var/lib/zeta/state\"",
                    path.display()
                ),
            ));
        };
        let destination = self.ancestor_folders(parent)?;
        let source = sys::open_folder(parent)
            .map_err(|e| self.fail(Side::Source(parent), "open the folder", e))?;
        let name = sys::c_string(name).map_err(|e| self.fail(Side::Source(path), "name", e))?;
        let relative = path.strip_prefix("/").unwrap_or(path);
        self.entry(source.as_fd(), destination.as_fd(), &name, path, relative)
    }

    /// Makes the folders of `parent` below the root (0700 for now; their source's mode and
    /// owner are set by [`Walker::finish`]) and returns the deepest, open.
    fn ancestor_folders(&mut self, parent: &Path) -> Result<OwnedFd, BackupError> {
        let mut current = sys::open_folder_at(self.root, c".")
            .map_err(|e| self.fail(Side::Copy(self.root_path), "open the folder", e))?;
        let mut source = PathBuf::from("/");
        let mut relative = PathBuf::new();
        for component in parent.components() {
            let Component::Normal(name) = component else {
                continue;
            };
            source.push(name);
            relative.push(name);
            let c_name =
                sys::c_string(name).map_err(|e| self.fail(Side::Source(&source), "name", e))?;
            let copy = self.root_path.join(&relative);
            match sys::make_folder_at(current.as_fd(), &c_name, 0o700) {
                Ok(()) => {
                    let st = sys::stat_path(&source)
                        .map_err(|e| self.fail(Side::Source(&source), "look at", e))?;
                    let relative = sys::c_string(relative.as_os_str())
                        .map_err(|e| self.fail(Side::Source(&source), "name", e))?;
                    self.ancestors.push((relative, st));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(self.fail(Side::Copy(&copy), "create the folder", e)),
            }
            current = sys::open_folder_at(current.as_fd(), &c_name)
                .map_err(|e| self.fail(Side::Copy(&copy), "open the folder", e))?;
        }
        Ok(current)
    }

    /// Recreates the entry `name` of `source` (the folder `src_path` is in) in `destination`.
    fn entry(
        &mut self,
        source: BorrowedFd,
        destination: BorrowedFd,
        name: &CStr,
        src_path: &Path,
        relative: &Path,
    ) -> Result<(), BackupError> {
        self.step()?;
        let copy_path = self.root_path.join(relative);
        let st = sys::stat_at(source, name)
            .map_err(|e| self.fail(Side::Source(src_path), "look at", e))?;
        match sys::file_type(&st) {
            libc::S_IFDIR => {
                if self.avoid.contains(&(st.st_dev, st.st_ino)) {
                    self.note(format!(
                        "skipped {}: it is the backup folder itself",
                        src_path.display()
                    ));
                    return Ok(());
                }
                sys::make_folder_at(destination, name, 0o700)
                    .map_err(|e| self.fail(Side::Copy(&copy_path), "create the folder", e))?;
                let src_dir = sys::open_folder_at(source, name)
                    .map_err(|e| self.fail(Side::Source(src_path), "open the folder", e))?;
                same_entry(&src_dir, &st)
                    .map_err(|e| self.fail(Side::Source(src_path), "open the folder", e))?;
                let dst_dir = sys::open_folder_at(destination, name)
                    .map_err(|e| self.fail(Side::Copy(&copy_path), "open the folder", e))?;
                let names = sys::folder_names(src_dir.as_fd())
                    .map_err(|e| self.fail(Side::Source(src_path), "list the folder", e))?;
                let mut read_ahead_until = 0;
                for (index, child) in names.iter().enumerate() {
                    if self.data.copies_from(st.st_dev) {
                        let until = (index + 1 + READ_AHEAD_FILES).min(names.len());
                        for ahead in &names[read_ahead_until.max(index + 1)..until] {
                            read_ahead(src_dir.as_fd(), ahead);
                        }
                        read_ahead_until = read_ahead_until.max(until);
                    }
                    let child_name = OsStr::from_bytes(child.to_bytes());
                    self.entry(
                        src_dir.as_fd(),
                        dst_dir.as_fd(),
                        child,
                        &src_path.join(child_name),
                        &relative.join(child_name),
                    )?;
                }
                self.set_metadata(dst_dir.as_fd(), &st)
                    .map_err(|e| self.fail(Side::Copy(&copy_path), "set the mode and times of", e))
            }
            libc::S_IFREG => self.file(source, destination, name, &st, src_path, relative),
            libc::S_IFLNK => {
                let target = sys::read_link_at(source, name, st.st_size as usize)
                    .map_err(|e| self.fail(Side::Source(src_path), "read the link", e))?;
                sys::symlink_at(&target, destination, name)
                    .map_err(|e| self.fail(Side::Copy(&copy_path), "create the link", e))?;
                ignore_eperm(sys::chown_at(destination, name, st.st_uid, st.st_gid))
                    .map_err(|e| self.fail(Side::Copy(&copy_path), "set the owner of", e))?;
                sys::set_times_at(destination, name, &st)
                    .map_err(|e| self.fail(Side::Copy(&copy_path), "set the times of", e))
            }
            libc::S_IFIFO => {
                sys::fifo_at(destination, name, 0o600)
                    .map_err(|e| self.fail(Side::Copy(&copy_path), "create the FIFO", e))?;
                let owned = ignore_eperm(sys::chown_at(destination, name, st.st_uid, st.st_gid))
                    .map_err(|e| self.fail(Side::Copy(&copy_path), "set the owner of", e))?;
                sys::chmod_at(destination, name, kept_mode(&st, owned))
                    .map_err(|e| self.fail(Side::Copy(&copy_path), "set the mode of", e))?;
                sys::set_times_at(destination, name, &st)
                    .map_err(|e| self.fail(Side::Copy(&copy_path), "set the times of", e))
            }
            kind => {
                let what = match kind {
                    libc::S_IFSOCK => "a socket",
                    libc::S_IFCHR => "a character device",
                    libc::S_IFBLK => "a block device",
                    _ => "of an unknown type",
                };
                self.note(format!(
                    "skipped {}: {what} is not backed up (it is recreated by whatever made it)",
                    src_path.display()
                ));
                Ok(())
            }
        }
    }

    /// Recreates a regular file: a link to its first copy when it is a hard link already
    /// copied, else a new file with its data, mode, owner and times.
    fn file(
        &mut self,
        source: BorrowedFd,
        destination: BorrowedFd,
        name: &CStr,
        st: &Stat,
        src_path: &Path,
        relative: &Path,
    ) -> Result<(), BackupError> {
        let copy_path = self.root_path.join(relative);
        let key = (st.st_dev, st.st_ino);
        if st.st_nlink > 1 {
            if let Some(first) = self.links.get(&key) {
                sys::link_at(self.root, first, destination, name)
                    .map_err(|e| self.fail(Side::Copy(&copy_path), "create the hard link", e))?;
                self.made.linked += 1;
                self.meter.files += 1;
                return Ok(());
            }
        }
        let src = sys::open_file_at(source, name)
            .map_err(|e| self.fail(Side::Source(src_path), "open", e))?;
        let st = same_entry(&src, st).map_err(|e| self.fail(Side::Source(src_path), "open", e))?;
        let dst = sys::create_file_at(destination, name, 0o600)
            .map_err(|e| self.fail(Side::Copy(&copy_path), "create", e))?;
        let method = {
            let Walker {
                data,
                meter,
                progress,
                limits,
                ..
            } = self;
            data.copy(&src, &dst, &st, &mut |bytes| {
                meter.bytes += bytes;
                limits.check(|| done(meter))?;
                meter.tick(Instant::now(), &mut **progress);
                Ok(())
            })
        };
        match method {
            Ok(Method::Cloned) => self.made.cloned += 1,
            Ok(Method::Copied) | Ok(Method::Empty) => self.made.copied += 1,
            Err(Stop::Halted(error)) => return Err(error),
            Err(Stop::Io(e)) => {
                // Tell a read error from a write error by trying a read.
                let side = if read_fails(&src) {
                    Side::Source(src_path)
                } else {
                    Side::Copy(&copy_path)
                };
                return Err(self.fail(side, "copy", e));
            }
        }
        self.set_metadata(dst.as_fd(), &st)
            .map_err(|e| self.fail(Side::Copy(&copy_path), "set the mode and times of", e))?;
        self.meter.files += 1;
        if st.st_nlink > 1 {
            if let Ok(relative) = sys::c_string(relative.as_os_str()) {
                self.links.insert(key, relative);
            }
        }
        Ok(())
    }

    /// Owner (where permitted), mode (without set-id bits when the owner could not be kept)
    /// and times.
    fn set_metadata(&self, fd: BorrowedFd, st: &Stat) -> io::Result<()> {
        let owned = ignore_eperm(sys::chown_fd(fd, st.st_uid, st.st_gid))?;
        sys::chmod_fd(fd, kept_mode(st, owned))?;
        sys::set_times_fd(fd, st)
    }

    /// Gives the ancestor folders their sources' modes and owners, deepest first.
    pub(super) fn finish(&mut self) -> Result<(), BackupError> {
        let ancestors = std::mem::take(&mut self.ancestors);
        for (relative, st) in ancestors.iter().rev() {
            let path = self.root_path.join(OsStr::from_bytes(relative.to_bytes()));
            let owned = ignore_eperm(sys::chown_at(self.root, relative, st.st_uid, st.st_gid))
                .map_err(|e| self.fail(Side::Copy(&path), "set the owner of", e))?;
            sys::chmod_at(self.root, relative, kept_mode(st, owned))
                .map_err(|e| self.fail(Side::Copy(&path), "set the mode of", e))?;
        }
        Ok(())
    }

    fn note(&mut self, note: String) {
        self.progress.note(&note);
        self.made.notes.push(note);
    }
}

/// What is done so far, for the messages of cancel and time-out.
fn done(meter: &Meter) -> String {
    let report = meter.report(Instant::now());
    format!(
        "{} of {} files and {} of {} copied",
        report.files,
        report.files_total,
        size(report.bytes),
        size(report.bytes_total)
    )
}

/// Checks that an opened descriptor is the entry that was looked at (not one swapped in
/// between) and returns its fresh `stat`.
fn same_entry(fd: &impl AsFd, st: &Stat) -> io::Result<Stat> {
    let now = sys::stat_fd(fd.as_fd())?;
    if now.st_dev != st.st_dev
        || now.st_ino != st.st_ino
        || sys::file_type(&now) != sys::file_type(st)
    {
        return Err(io::Error::other("it was replaced while being backed up"));
    }
    Ok(now)
}

/// `Ok(true)` when the call worked, `Ok(false)` when it was not permitted (an owner that only
/// root may give; `EINVAL` for an id unknown in this user namespace).
fn ignore_eperm(result: io::Result<()>) -> io::Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EINVAL)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The permission bits to give a copy: the source's, without set-user-id and set-group-id
/// when the copy could not get the source's owner.
fn kept_mode(st: &Stat, owned: bool) -> u32 {
    let mode = st.st_mode & 0o7777;
    if owned {
        mode
    } else {
        mode & !0o6000
    }
}

/// Whether reading one byte of `file` fails (so an I/O error came from the source).
fn read_fails(file: &fs::File) -> bool {
    use std::os::unix::fs::FileExt;
    let mut byte = [0u8; 1];
    file.read_at(&mut byte, 0).is_err()
}

/// The user Visor runs as, for messages: `name (uid N)`.
pub(super) fn user() -> String {
    let uid = sys::effective_uid();
    match sys::user_name(uid) {
        Some(name) => format!("{name}, uid {uid}"),
        None => format!("uid {uid}"),
    }
}
