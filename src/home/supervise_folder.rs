//! `HOME/.visor/`, the supervise folder (in the spirit of runit's `supervise/`): what any
//! command can learn about the running Visor without asking it.
//!
//! - `lock`: held with `flock(2)` by `visor run` for its whole life and holding its pid. A
//!   second `visor run` cannot take it; `visor status` tells "running" from it, so a Visor
//!   killed outright reads as not running (the kernel drops the lock with the process).
//! - `status.json`: the supervisor's state, replaced atomically on every change.
//! - `control`: the UNIX socket (mode 0600) `visor restart` and `visor switch` talk to.
//! - `upgrade`: the unfinished-upgrade mark (`<tag> <height>`).
//!
//! The folder is made with mode 0700: only Visor's user may read or control it. Visor's user
//! is the owner of HOME, and the folder is trusted only when it is a real folder (never a
//! link) of that user that nobody else may write ([`folder_problem`]); a file read from it
//! (`status.json`, the mark) only when it is a regular file of that user that nobody else may
//! write ([`read_owned`]). Whoever could write them could make `run` signal any process of
//! Visor's user, start the core from a height of their choosing, or take the lock.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::owner;
use super::permissions::{other_writers, shell_word};

pub const FOLDER: &str = ".visor";
pub const LOCK_FILE: &str = "lock";
pub const STATUS_FILE: &str = "status.json";
pub const CONTROL_SOCKET: &str = "control";
pub const UPGRADE_MARK: &str = "upgrade";

/// The longest path a UNIX socket address holds (`sun_path` is 108 bytes with its NUL).
pub const SOCKET_PATH_MAX: usize = 107;

/// The largest file read from the folder (`status.json`, the upgrade mark).
const MAX_READ: u64 = 1 << 20;

/// The supervise folder of one home.
#[derive(Debug, Clone)]
pub struct SuperviseFolder {
    dir: PathBuf,
    /// Visor's user, whose folder this must be: the owner of HOME.
    owner: u32,
}

/// Why the lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it; its pid when the lock file names one.
    Held(Option<u32>),
    /// The folder or the lock file cannot be used as they are (not Visor's user's, a link, a
    /// read-only file system, ...): a configuration error, with its cause and fix.
    Unusable(String),
    Io(String),
}

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Where to reach the control socket: its path or, when that path is longer than a socket
/// address holds, the same name through a descriptor of the supervise folder
/// (`/proc/self/fd/N/control`), which works for `bind` and `connect` alike.
#[derive(Debug)]
pub struct ControlAddress {
    path: PathBuf,
    address: PathBuf,
    _folder: Option<OwnedFd>,
}

impl ControlAddress {
    /// The socket's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// What to bind or connect to; valid while `self` lives.
    pub fn address(&self) -> &Path {
        &self.address
    }
}

impl SuperviseFolder {
    pub fn new(home: &Path) -> SuperviseFolder {
        SuperviseFolder {
            dir: home.join(FOLDER),
            owner: owner::home_owner(home).unwrap_or_else(owner::effective_uid),
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }
    pub fn lock_file(&self) -> PathBuf {
        self.dir.join(LOCK_FILE)
    }
    pub fn status_file(&self) -> PathBuf {
        self.dir.join(STATUS_FILE)
    }
    pub fn control_socket(&self) -> PathBuf {
        self.dir.join(CONTROL_SOCKET)
    }
    pub fn upgrade_mark(&self) -> PathBuf {
        self.dir.join(UPGRADE_MARK)
    }

    /// Why the folder cannot be trusted as it is (looked at with `lstat`, so a link is seen
    /// as a link), or `None` when it is Visor's own or does not exist yet.
    pub fn problem(&self) -> Option<String> {
        let meta = fs::symlink_metadata(&self.dir).ok()?;
        folder_problem(&self.dir, &meta, self.owner)
    }

    /// The folder as an `O_PATH` descriptor, never through a link, checked on that descriptor
    /// to be Visor's own (see [`folder_problem`]); created with mode 0700 first when `create`.
    fn open(&self, create: bool) -> Result<OwnedFd, FolderError> {
        if create {
            match fs::DirBuilder::new().mode(0o700).create(&self.dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    let fix = match e.raw_os_error() {
                        Some(libc::EROFS) => "the home folder must be on a writable file system",
                        _ => "check the owner and the permissions of the home folder",
                    };
                    return Err(FolderError::Unusable(format!(
                        "{}: cannot create ({e}); {fix}",
                        self.dir.display()
                    )));
                }
            }
        }
        if let Some(problem) = self.problem() {
            return Err(FolderError::Unusable(problem));
        }
        let folder = open_path(
            &self.dir,
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
        .map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => FolderError::Missing,
            _ => FolderError::Unusable(format!("{}: cannot open ({e})", self.dir.display())),
        })?;
        let meta = File::from(folder.try_clone().map_err(|e| {
            FolderError::Unusable(format!("{}: cannot open ({e})", self.dir.display()))
        })?)
        .metadata()
        .map_err(|e| FolderError::Unusable(format!("{}: cannot stat ({e})", self.dir.display())))?;
        match folder_problem(&self.dir, &meta, self.owner) {
            Some(problem) => Err(FolderError::Unusable(problem)),
            None => Ok(folder),
        }
    }

    /// Takes the lock for `visor run` (or for a `switch` without a running Visor) and writes
    /// this process's pid into it. Never waits. Creates the folder (0700) when it is missing,
    /// and refuses one that is not Visor's own.
    pub fn lock(&self) -> Result<Lock, LockError> {
        let folder = self.open(true).map_err(|e| match e {
            FolderError::Missing => LockError::Io(format!(
                "{}: removed while Visor was taking the lock; try again",
                self.dir.display()
            )),
            FolderError::Unusable(problem) => LockError::Unusable(problem),
        })?;
        let path = self.lock_file();
        // The descriptor that holds the lock is read-only, so a home remounted read-only
        // while Visor runs is not kept busy by it.
        let mut file = open_at(&folder, LOCK_FILE, libc::O_RDONLY | libc::O_CREAT, 0o600)
            .map_err(|e| self.lock_error(&path, "open", e))?;
        let meta = file
            .metadata()
            .map_err(|e| LockError::Io(format!("{}: cannot stat ({e})", path.display())))?;
        if let Some(problem) = lock_file_problem(&path, &meta, self.owner) {
            return Err(LockError::Unusable(problem));
        }
        // SAFETY: flock(2) on a descriptor this function owns; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(LockError::Held(read_pid(&mut file)));
            }
            return Err(LockError::Io(format!(
                "{}: cannot lock ({e})",
                path.display()
            )));
        }
        write_pid(&folder, &file).map_err(|e| self.lock_error(&path, "write", e))?;
        Ok(Lock { _file: file })
    }

    /// A failure to open or write the lock file: its cause and what to do. Ownership, a link
    /// and a read-only file system are configuration errors; anything else (a full disk) is
    /// a runtime failure.
    fn lock_error(&self, path: &Path, what: &str, e: io::Error) -> LockError {
        let shown = path.display();
        match e.raw_os_error() {
            Some(libc::EACCES) | Some(libc::EPERM) => {
                let meta = fs::symlink_metadata(path).ok();
                if let Some(problem) = meta
                    .as_ref()
                    .and_then(|meta| lock_file_problem(path, meta, self.owner))
                {
                    return LockError::Unusable(problem);
                }
                let facts = meta.map(|meta| format!(" ({})", facts(&meta))).unwrap_or_default();
                LockError::Unusable(format!(
                    "{shown}: cannot {what} ({e}){facts}; Visor runs as {}, the owner of HOME, and \
                     everything in {} must be that user's (a command run as another user leaves \
                     such files): chown -R {} {}",
                    owner::describe(owner::effective_uid()),
                    self.dir.display(),
                    owner::chown_owner(self.owner),
                    shell_word(&self.dir)
                ))
            }
            Some(libc::ELOOP) => LockError::Unusable(format!(
                "{shown}: is a symbolic link, which Visor never follows there; remove it (rm {})",
                shell_word(path)
            )),
            Some(libc::EROFS) => LockError::Unusable(format!(
                "{shown}: cannot {what} ({e}); the home folder must be on a writable file system"
            )),
            _ if what == "write" => LockError::Io(format!(
                "{shown}: cannot write ({e}); check free space"
            )),
            _ => LockError::Io(format!(
                "{shown}: cannot open ({e}); check the permissions of {}, and that lock is a plain file",
                self.dir.display()
            )),
        }
    }

    /// The pid of the Visor holding the lock (0 when the lock file names none), or `None`
    /// when no Visor runs on this home; an error when that cannot be told (the folder or the
    /// lock cannot be opened by this user, or is not Visor's own). It never creates anything.
    pub fn holder(&self) -> Result<Option<u32>, String> {
        let folder = match self.open(false) {
            Ok(folder) => folder,
            Err(FolderError::Missing) => return Ok(None),
            Err(FolderError::Unusable(problem)) => return Err(problem),
        };
        let path = self.lock_file();
        let mut file = match open_at(&folder, LOCK_FILE, libc::O_RDONLY, 0) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("{}: cannot open ({e})", path.display())),
        };
        // Nobody can hold a lock on what `lock` refuses to lock.
        if !file.metadata().is_ok_and(|meta| meta.is_file()) {
            return Ok(None);
        }
        // SAFETY: flock(2) on a descriptor this function owns; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
            // SAFETY: as above; releases the shared lock just taken.
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(format!("{}: cannot test the lock ({e})", path.display()));
        }
        Ok(Some(read_pid(&mut file).unwrap_or(0)))
    }

    /// Where to reach the control socket; see [`ControlAddress`]. An error when the path is
    /// too long and the folder cannot be reached through `/proc`.
    pub fn control_address(&self) -> Result<ControlAddress, String> {
        let path = self.control_socket();
        if path.as_os_str().len() <= SOCKET_PATH_MAX {
            return Ok(ControlAddress {
                address: path.clone(),
                path,
                _folder: None,
            });
        }
        if let Some(problem) = self.control_problem() {
            return Err(problem);
        }
        let folder = self.open(false).map_err(|e| match e {
            FolderError::Missing => format!("{}: no such folder", self.dir.display()),
            FolderError::Unusable(problem) => problem,
        })?;
        Ok(ControlAddress {
            address: PathBuf::from(format!(
                "/proc/self/fd/{}/{CONTROL_SOCKET}",
                folder.as_raw_fd()
            )),
            path,
            _folder: Some(folder),
        })
    }

    /// Why no control socket can be made in this folder: its path is longer than a socket
    /// address holds and `/proc` (through which a shorter name reaches it) is not mounted.
    pub fn control_problem(&self) -> Option<String> {
        let path = self.control_socket();
        let length = path.as_os_str().len();
        if length <= SOCKET_PATH_MAX || Path::new("/proc/self/fd").is_dir() {
            return None;
        }
        Some(format!(
            "{}: {length} bytes, longer than the {SOCKET_PATH_MAX} a UNIX socket address holds, \
             and /proc is not mounted, through which Visor reaches a socket in a folder this \
             deep; visor restart and visor switch cannot reach Visor: mount /proc or use a \
             shorter home path",
            path.display()
        ))
    }

    /// Replaces `status.json` atomically.
    pub fn write_status(&self, status: &serde_json::Value) -> Result<(), String> {
        let mut text = serde_json::to_string_pretty(status).unwrap_or_default();
        text.push('\n');
        write_atomic(&self.status_file(), text.as_bytes(), 0o644)
    }

    /// The last `status.json`, if there is one that parses and that Visor can trust.
    pub fn read_status(&self) -> Option<serde_json::Value> {
        self.read_status_or_warning().ok().flatten()
    }

    /// The last `status.json` (`None` when there is none or it does not parse), or why it is
    /// ignored: the folder or the file is not Visor's user's own, or others may write it.
    pub fn read_status_or_warning(&self) -> Result<Option<serde_json::Value>, String> {
        if let Some(problem) = self.problem() {
            return Err(problem);
        }
        let bytes = read_owned(&self.status_file(), self.owner)?;
        Ok(bytes.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }
}

/// Why [`SuperviseFolder::open`] gave no descriptor.
enum FolderError {
    Missing,
    Unusable(String),
}

/// The facts a message about `meta` gives: owner and mode.
fn facts(meta: &fs::Metadata) -> String {
    format!(
        "owner {}, mode {:04o}",
        owner::describe(meta.uid()),
        meta.mode() & 0o7777
    )
}

/// Why a supervise folder with this `lstat` (or `fstat`) cannot be trusted, or `None`: it
/// must be a real folder (not a link), owned by `owner` and writable by nobody else. Whoever
/// else can write it can forge `status.json` (whose processes `run` stops), the upgrade mark
/// (the height the next start loads) or the lock.
pub fn folder_problem(path: &Path, meta: &fs::Metadata, owner: u32) -> Option<String> {
    let shown = path.display();
    let word = shell_word(path);
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target = fs::read_link(path)
            .map(|t| t.display().to_string())
            .unwrap_or_else(|_| "?".into());
        return Some(format!(
            "{shown}: is a symbolic link to {target} ({}), but Visor's supervise folder must be a \
             real folder that only Visor's user can write; remove the link (rm {word}) and Visor \
             creates the folder",
            facts(meta)
        ));
    }
    if !kind.is_dir() {
        return Some(format!(
            "{shown}: is not a folder ({}); Visor keeps its lock, state and control socket in a \
             folder of this name: move it away (mv {word} {word}.old) and Visor creates the folder",
            facts(meta)
        ));
    }
    if meta.uid() != owner {
        return Some(format!(
            "{shown}: belongs to {}, not to {}, the owner of HOME as whom Visor runs (mode {:04o}), \
             so what it holds could be forged and Visor may be unable to write it; give it back \
             (chown -R {} {word}) or remove it (rm -r {word})",
            owner::describe(meta.uid()),
            owner::describe(owner),
            meta.mode() & 0o7777,
            owner::chown_owner(owner)
        ));
    }
    let writers = other_writers(meta.mode() & 0o7777)?;
    Some(format!(
        "{shown}: is writable by {writers} ({}), so any such user could forge Visor's state, its \
         upgrade mark or its lock; remove that right (chmod go-w {word}) and remove what you did \
         not put there",
        facts(meta)
    ))
}

/// Why a file Visor reads from its supervise folder cannot be trusted, or `None`: it must be a
/// regular file owned by `owner` and writable by nobody else.
fn file_problem(path: &Path, meta: &fs::Metadata, owner: u32) -> Option<String> {
    let shown = path.display();
    let word = shell_word(path);
    if !meta.is_file() {
        return Some(format!(
            "{shown}: is not a regular file ({}); remove it (rm -r {word})",
            facts(meta)
        ));
    }
    if meta.uid() != owner {
        return Some(format!(
            "{shown}: belongs to {}, not to {} as whom Visor runs (mode {:04o}), so it may be \
             forged; remove it (rm {word})",
            owner::describe(meta.uid()),
            owner::describe(owner),
            meta.mode() & 0o7777
        ));
    }
    let writers = other_writers(meta.mode() & 0o7777)?;
    Some(format!(
        "{shown}: is writable by {writers} ({}), so it may be forged; remove it (rm {word})",
        facts(meta)
    ))
}

/// [`file_problem`] for the lock file: a FIFO or another user's lock is refused, but its mode
/// does not matter (only the `flock` on it does).
fn lock_file_problem(path: &Path, meta: &fs::Metadata, owner: u32) -> Option<String> {
    if !meta.is_file() {
        return Some(format!(
            "{}: is not a plain file ({}); remove it (rm -r {}) and Visor creates the lock",
            path.display(),
            facts(meta),
            shell_word(path)
        ));
    }
    if meta.uid() != owner {
        return Some(format!(
            "{}: belongs to {}, not to {} as whom Visor runs (mode {:04o}), so Visor cannot write \
             it (a command run as another user leaves such files); give the folder back: \
             chown -R {} {}",
            path.display(),
            owner::describe(meta.uid()),
            owner::describe(owner),
            meta.mode() & 0o7777,
            owner::chown_owner(owner),
            shell_word(path.parent().unwrap_or(path))
        ));
    }
    None
}

/// Reads a small file Visor keeps (`status.json`, the upgrade mark) whole: `None` when it does
/// not exist, an error (the reason it is ignored) when it is a link, not a regular file, not
/// owned by `owner` or writable by others, or too large. It is opened without following a link
/// and without blocking, and judged on the opened descriptor.
pub fn read_owned(path: &Path, owner: u32) -> Result<Option<Vec<u8>>, String> {
    let shown = path.display();
    let file = match open_path(
        path,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC,
    ) {
        Ok(fd) => File::from(fd),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(format!(
                "{shown}: is a symbolic link, which Visor never follows there; remove it (rm {})",
                shell_word(path)
            ))
        }
        Err(e) => return Err(format!("{shown}: cannot open ({e})")),
    };
    let meta = file
        .metadata()
        .map_err(|e| format!("{shown}: cannot stat ({e})"))?;
    if let Some(problem) = file_problem(path, &meta, owner) {
        return Err(problem);
    }
    let mut bytes = Vec::new();
    file.take(MAX_READ + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{shown}: cannot read ({e})"))?;
    if bytes.len() as u64 > MAX_READ {
        return Err(format!(
            "{shown}: larger than {} MiB, which Visor never writes; remove it",
            MAX_READ >> 20
        ));
    }
    Ok(Some(bytes))
}

/// `open(2)` of a path with raw flags.
fn open_path(path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a valid NUL-terminated path; the returned descriptor is owned below.
    let fd = unsafe { libc::open(c_path.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `name` in `folder` (never following a link, never blocking on a FIFO, close-on-exec),
/// creating it with `mode` when `flags` has `O_CREAT`.
fn open_at(folder: &OwnedFd, name: &str, flags: libc::c_int, mode: u32) -> io::Result<File> {
    let c_name = std::ffi::CString::new(name).expect("a fixed name");
    let flags = flags | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY;
    // SAFETY: a valid descriptor and a NUL-terminated name; the result is owned below.
    let fd = unsafe {
        libc::openat(
            folder.as_raw_fd(),
            c_name.as_ptr(),
            flags,
            mode as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Writes this process's pid into the locked file through that file's own descriptor: it is
/// reopened for writing through `/proc/self/fd`, which names the very file locked, never the
/// path again. Without `/proc`, the name is opened in the checked folder without following a
/// link, and used only when it is the file locked.
fn write_pid(folder: &OwnedFd, locked: &File) -> io::Result<()> {
    let through_proc = format!("/proc/self/fd/{}", locked.as_raw_fd());
    let mut writer = match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&through_proc)
    {
        Ok(writer) => writer,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let writer = open_at(folder, LOCK_FILE, libc::O_WRONLY, 0)?;
            let (a, b) = (writer.metadata()?, locked.metadata()?);
            if (a.dev(), a.ino()) != (b.dev(), b.ino()) {
                return Err(io::Error::other("replaced while it was being locked"));
            }
            writer
        }
        Err(e) => return Err(e),
    };
    writer.set_len(0)?;
    writer.write_all(format!("{}\n", std::process::id()).as_bytes())
}

fn read_pid(file: &mut File) -> Option<u32> {
    use std::io::Seek;
    let mut text = String::new();
    file.seek(io::SeekFrom::Start(0)).ok()?;
    file.take(64).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Writes `path` whole or not at all: a temporary file beside it (`.visor-tmp-<name>-<pid>-0`,
/// created exclusively so a planted link is never followed), then `rename(2)`.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".visor-tmp-{name}-{}-0", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(data)?;
            file.set_permissions(fs::Permissions::from_mode(mode))
        })
        .and_then(|()| fs::rename(&tmp, path));
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!(
            "{}: cannot write ({e}); check free space and permissions",
            path.display()
        )
    })
}

/// The start time of process `pid` (clock ticks since boot, `/proc/PID/stat` field 22): with
/// the pid it names one process, even after the pid is reused.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // Fields after the command: state is field 3, so starttime (22) is the 20th here.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str) -> SuperviseFolder {
        let home = std::env::temp_dir().join(format!("visor-sf-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&home);
        fs::create_dir_all(&home).unwrap();
        let folder = SuperviseFolder::new(&home);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(folder.path())
            .unwrap();
        folder
    }

    #[test]
    fn the_lock_is_held_once_and_names_its_holder() {
        let folder = folder("lock");
        assert_eq!(folder.holder(), Ok(None));
        let lock = folder.lock().unwrap();
        assert_eq!(folder.holder(), Ok(Some(std::process::id())));
        match folder.lock() {
            Err(LockError::Held(pid)) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("second lock: {other:?}"),
        }
        drop(lock);
        assert_eq!(folder.holder(), Ok(None));
        let mode = fs::metadata(folder.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::remove_dir_all(folder.path().parent().unwrap()).unwrap();
    }

    #[test]
    fn status_is_replaced_whole() {
        let folder = folder("status");
        assert_eq!(folder.read_status(), None);
        folder
            .write_status(&serde_json::json!({"phase": "running"}))
            .unwrap();
        folder
            .write_status(&serde_json::json!({"phase": "stopping"}))
            .unwrap();
        assert_eq!(folder.read_status().unwrap()["phase"], "stopping");
        let names: Vec<_> = fs::read_dir(folder.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(STATUS_FILE)]);
        fs::remove_dir_all(folder.path().parent().unwrap()).unwrap();
    }

    #[test]
    fn a_fifo_in_place_of_the_lock_or_the_status_blocks_nothing() {
        let folder = folder("fifo");
        for path in [folder.lock_file(), folder.status_file()] {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: mkfifo(3) with a valid NUL-terminated path.
            assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        }
        // Each would block forever on a FIFO opened for reading without a writer.
        assert_eq!(folder.read_status(), None);
        assert_eq!(folder.holder(), Ok(None));
        match folder.lock() {
            Err(LockError::Unusable(message)) => {
                assert!(message.contains("plain file"), "{message}")
            }
            other => panic!("lock on a FIFO: {other:?}"),
        }
        fs::remove_dir_all(folder.path().parent().unwrap()).unwrap();
    }

    #[test]
    fn a_folder_that_is_a_link_or_writable_by_others_is_not_trusted() {
        let folder = folder("trust");
        let home = folder.path().parent().unwrap().to_path_buf();
        fs::remove_dir(folder.path()).unwrap();
        let elsewhere = home.join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, folder.path()).unwrap();
        for problem in [
            folder.problem().unwrap(),
            folder.holder().unwrap_err(),
            folder.read_status_or_warning().unwrap_err(),
        ] {
            assert!(problem.contains("is a symbolic link to"), "{problem}");
        }
        match folder.lock() {
            Err(LockError::Unusable(problem)) => {
                assert!(problem.contains("rm "), "{problem}")
            }
            other => panic!("lock through a link: {other:?}"),
        }
        assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);

        fs::remove_file(folder.path()).unwrap();
        fs::create_dir(folder.path()).unwrap();
        fs::set_permissions(folder.path(), fs::Permissions::from_mode(0o770)).unwrap();
        match folder.lock() {
            Err(LockError::Unusable(problem)) => {
                assert!(problem.contains("is writable by its group ("), "{problem}");
                assert!(problem.contains("mode 0770)"), "{problem}");
                assert!(problem.contains("chmod go-w"), "{problem}");
            }
            other => panic!("lock in a group-writable folder: {other:?}"),
        }
        fs::set_permissions(folder.path(), fs::Permissions::from_mode(0o700)).unwrap();
        let lock = folder.lock().unwrap();
        let pid = fs::read_to_string(folder.lock_file()).unwrap();
        assert_eq!(pid, format!("{}\n", std::process::id()));
        drop(lock);
        fs::remove_dir_all(home).unwrap();
    }

    #[test]
    fn files_read_from_the_folder_must_be_visors_users_alone() {
        let folder = folder("owned");
        let me = owner::effective_uid();
        let file = folder.status_file();
        assert_eq!(read_owned(&file, me), Ok(None));
        fs::write(&file, "{}").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_owned(&file, me), Ok(Some(b"{}".to_vec())));
        assert!(read_owned(&file, me.wrapping_add(1))
            .unwrap_err()
            .contains("so it may be forged; remove it (rm "));
        fs::set_permissions(&file, fs::Permissions::from_mode(0o666)).unwrap();
        let ignored = read_owned(&file, me).unwrap_err();
        assert!(
            ignored.contains("is writable by its group and every user"),
            "{ignored}"
        );
        assert_eq!(folder.read_status(), None);
        fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &file).unwrap();
        assert!(read_owned(&file, me).unwrap_err().contains("symbolic link"));
        fs::remove_dir_all(folder.path().parent().unwrap()).unwrap();
    }

    #[test]
    fn a_control_socket_too_deep_for_an_address_is_reached_through_the_folder() {
        let folder = folder("short");
        let address = folder.control_address().unwrap();
        assert_eq!(address.address(), folder.control_socket());
        let home = folder.path().parent().unwrap().to_path_buf();
        let deep_home = home.join("d".repeat(120));
        fs::create_dir(&deep_home).unwrap();
        let deep = SuperviseFolder::new(&deep_home);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(deep.path())
            .unwrap();
        let address = deep.control_address().unwrap();
        assert_eq!(address.path(), deep.control_socket());
        let through = address.address().display().to_string();
        assert!(through.starts_with("/proc/self/fd/"), "{through}");
        assert!(through.len() <= SOCKET_PATH_MAX);
        let listener = std::os::unix::net::UnixListener::bind(address.address()).unwrap();
        assert!(deep.control_socket().exists());
        drop(listener);
        assert_eq!(deep.control_problem(), None);
        fs::remove_dir_all(home).unwrap();
    }

    #[test]
    fn start_times_identify_a_process() {
        let me = process_start_time(std::process::id()).unwrap();
        assert!(me > 0);
        assert_eq!(process_start_time(std::process::id()), Some(me));
        assert_eq!(process_start_time(u32::MAX), None);
    }
}
