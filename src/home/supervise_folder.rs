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
//! The folder is made with mode 0700: only Visor's user may read or control it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const FOLDER: &str = ".visor";
pub const LOCK_FILE: &str = "lock";
pub const STATUS_FILE: &str = "status.json";
pub const CONTROL_SOCKET: &str = "control";
pub const UPGRADE_MARK: &str = "upgrade";

/// The supervise folder of one home.
#[derive(Debug, Clone)]
pub struct SuperviseFolder {
    dir: PathBuf,
}

/// Why the lock was not taken.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds it; its pid when the lock file names one.
    Held(Option<u32>),
    Io(String),
}

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl SuperviseFolder {
    pub fn new(home: &Path) -> SuperviseFolder {
        SuperviseFolder {
            dir: home.join(FOLDER),
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

    /// Creates the folder (mode 0700) when it is missing.
    pub fn create(&self) -> Result<(), String> {
        match fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && self.dir.is_dir() => Ok(()),
            Err(e) => Err(format!(
                "{}: cannot create ({e}); check the permissions of the home folder",
                self.dir.display()
            )),
        }
    }

    /// Takes the lock for `visor run` (or for a `switch` without a running Visor) and writes
    /// this process's pid into it. Never waits.
    pub fn lock(&self) -> Result<Lock, LockError> {
        let path = self.lock_file();
        // The descriptor that holds the lock is read-only, so a home remounted read-only
        // while Visor runs is not kept busy by it; the pid is written through another one.
        let mut file = open_lock_file(&path, libc::O_CREAT).map_err(|e| {
            LockError::Io(format!(
                "{}: cannot open ({e}); check the permissions of {}, and that lock is a plain file",
                path.display(),
                self.dir.display()
            ))
        })?;
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
        let written = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .and_then(|mut w| w.write_all(format!("{}\n", std::process::id()).as_bytes()));
        if let Err(e) = written {
            return Err(LockError::Io(format!(
                "{}: cannot write ({e}); check free space",
                path.display()
            )));
        }
        Ok(Lock { _file: file })
    }

    /// The pid of the Visor holding the lock, or `None` when no Visor runs on this home. It
    /// never creates anything.
    pub fn holder(&self) -> Option<u32> {
        let mut file = open_lock_file(&self.lock_file(), 0).ok()?;
        // SAFETY: flock(2) on a descriptor this function owns; no memory is involved.
        let free = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0;
        if free {
            // SAFETY: as above; releases the shared lock just taken.
            unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_UN) };
            return None;
        }
        Some(read_pid(&mut file).unwrap_or(0))
    }

    /// Replaces `status.json` atomically.
    pub fn write_status(&self, status: &serde_json::Value) -> Result<(), String> {
        let mut text = serde_json::to_string_pretty(status).unwrap_or_default();
        text.push('\n');
        write_atomic(&self.status_file(), text.as_bytes(), 0o644)
    }

    /// The last `status.json`, if there is one that parses.
    pub fn read_status(&self) -> Option<serde_json::Value> {
        // The bounded reader: a FIFO planted in its place cannot block `run` or `status`.
        let bytes = crate::home::read::read_config_file(&self.status_file(), "").ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// Opens the lock file read-only (creating it with `extra` = `O_CREAT`), never blocking on
/// something that is not a plain file put in its place, and never following a link.
fn open_lock_file(path: &Path, extra: libc::c_int) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(extra | libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .mode(0o600)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a plain file"));
    }
    Ok(file)
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
        folder.create().unwrap();
        folder
    }

    #[test]
    fn the_lock_is_held_once_and_names_its_holder() {
        let folder = folder("lock");
        assert_eq!(folder.holder(), None);
        let lock = folder.lock().unwrap();
        assert_eq!(folder.holder(), Some(std::process::id()));
        match folder.lock() {
            Err(LockError::Held(pid)) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("second lock: {other:?}"),
        }
        drop(lock);
        assert_eq!(folder.holder(), None);
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
        assert_eq!(folder.holder(), None);
        match folder.lock() {
            Err(LockError::Io(message)) => assert!(message.contains("plain file"), "{message}"),
            other => panic!("lock on a FIFO: {other:?}"),
        }
        fs::remove_dir_all(folder.path().parent().unwrap()).unwrap();
    }

    #[test]
    fn start_times_identify_a_process() {
        let me = process_start_time(std::process::id()).unwrap();
        assert!(me > 0);
        assert_eq!(process_start_time(std::process::id()), Some(me));
        assert_eq!(process_start_time(u32::MAX), None);
    }
}
