//! The system calls of the backup, each behind a safe function: the `*at` family on folder
//! descriptors (so a walk never follows a link it did not mean to), `FICLONE`,
//! `copy_file_range`, `SEEK_DATA`/`SEEK_HOLE`, owners, modes and times, `syncfs`,
//! `renameat2(RENAME_NOREPLACE)`, free space.
//!
//! Every `unsafe` block of the backup is here. It must not decide anything: no fallbacks, no
//! retries, no messages beyond the OS error.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `stat` as the kernel gives it.
pub(super) type Stat = libc::stat;

/// A name or path as a C string; a NUL inside is an `InvalidInput` error.
pub(super) fn c_string(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the name holds a NUL character",
        )
    })
}

/// Turns a -1 return into the OS error.
fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Turns a -1 return of a `ssize_t`/`off_t` call into the OS error.
fn check_size(rc: i64) -> io::Result<i64> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Opens `path` (following links in it, as any path given by the operator) as a folder.
pub(super) fn open_folder(path: &Path) -> io::Result<OwnedFd> {
    let path = c_string(path.as_os_str())?;
    // SAFETY: `path` is a valid NUL-terminated string that outlives the call.
    let fd = check(unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `openat` with the given flags (close-on-exec added) and mode.
fn open_at(dir: BorrowedFd, name: &CStr, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid NUL-terminated string; `dir` is an open descriptor.
    let fd = check(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: `fd` was just opened and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the folder `name` in `dir`, refusing a link (`ELOOP`/`ENOTDIR`).
pub(super) fn open_folder_at(dir: BorrowedFd, name: &CStr) -> io::Result<OwnedFd> {
    open_at(
        dir,
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
}

/// Opens the file `name` in `dir` for reading, refusing a link, never blocking on a FIFO
/// swapped in, never becoming a controlling terminal.
pub(super) fn open_file_at(dir: BorrowedFd, name: &CStr) -> io::Result<File> {
    let fd = open_at(
        dir,
        name,
        libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
        0,
    )?;
    Ok(File::from(fd))
}

/// Creates the file `name` in `dir` for writing; it must not exist (no link is followed).
pub(super) fn create_file_at(dir: BorrowedFd, name: &CStr, mode: u32) -> io::Result<File> {
    let fd = open_at(
        dir,
        name,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        mode,
    )?;
    Ok(File::from(fd))
}

/// `fstatat` without following a link.
pub(super) fn stat_at(dir: BorrowedFd, name: &CStr) -> io::Result<Stat> {
    // SAFETY: an all-zero `stat` is a valid value of the plain C struct.
    let mut st: Stat = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated, `st` is writable and both outlive the call.
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

/// `fstat`.
pub(super) fn stat_fd(fd: BorrowedFd) -> io::Result<Stat> {
    // SAFETY: an all-zero `stat` is a valid value of the plain C struct.
    let mut st: Stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is writable and outlives the call.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// `stat` of a path, following links.
pub(super) fn stat_path(path: &Path) -> io::Result<Stat> {
    let path = c_string(path.as_os_str())?;
    // SAFETY: an all-zero `stat` is a valid value of the plain C struct.
    let mut st: Stat = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated, `st` is writable and both outlive the call.
    check(unsafe { libc::stat(path.as_ptr(), &mut st) })?;
    Ok(st)
}

/// The file type bits of a mode.
pub(super) fn file_type(st: &Stat) -> u32 {
    st.st_mode & libc::S_IFMT
}

/// `mkdirat`.
pub(super) fn make_folder_at(dir: BorrowedFd, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and outlives the call.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) })?;
    Ok(())
}

/// The names in an open folder, without `.` and `..`. The descriptor is duplicated, so `dir`
/// stays open and positioned.
pub(super) fn folder_names(dir: BorrowedFd) -> io::Result<Vec<CString>> {
    // SAFETY: dup of an open descriptor.
    let copy = check(unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: `copy` is an open folder descriptor that fdopendir takes over.
    let stream = unsafe { libc::fdopendir(copy) };
    if stream.is_null() {
        let error = io::Error::last_os_error();
        // SAFETY: fdopendir failed, so `copy` is still ours to close.
        unsafe { libc::close(copy) };
        return Err(error);
    }
    // Start from the beginning even if the descriptor was read before.
    // SAFETY: `stream` is a valid DIR pointer.
    unsafe { libc::rewinddir(stream) };
    let mut names = Vec::new();
    let result = loop {
        // SAFETY: errno is thread-local; clearing it tells end-of-folder from an error.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: `stream` is a valid DIR pointer until closedir below.
        let entry = unsafe { libc::readdir(stream) };
        if entry.is_null() {
            let error = io::Error::last_os_error();
            break match error.raw_os_error() {
                Some(0) | None => Ok(()),
                Some(_) => Err(error),
            };
        }
        // SAFETY: readdir returned a valid entry whose d_name is NUL-terminated and lives
        // until the next readdir; it is copied at once.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
        let bytes = name.to_bytes();
        if bytes != b"." && bytes != b".." {
            names.push(name.to_owned());
        }
    };
    // SAFETY: `stream` is valid and closed once; this also closes `copy`.
    unsafe { libc::closedir(stream) };
    result.map(|()| names)
}

/// `readlinkat`: the target of the link `name` in `dir`.
pub(super) fn read_link_at(dir: BorrowedFd, name: &CStr, size_hint: usize) -> io::Result<CString> {
    let mut capacity = size_hint.clamp(64, 4096) + 1;
    loop {
        let mut buffer = vec![0u8; capacity];
        // SAFETY: `buffer` is writable for `capacity` bytes; `name` is NUL-terminated.
        let len = check_size(unsafe {
            libc::readlinkat(
                dir.as_raw_fd(),
                name.as_ptr(),
                buffer.as_mut_ptr().cast(),
                capacity,
            ) as i64
        })? as usize;
        if len < capacity {
            buffer.truncate(len);
            return c_string(OsStr::from_bytes(&buffer));
        }
        if capacity > 1 << 20 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "link target longer than 1 MiB",
            ));
        }
        capacity *= 2;
    }
}

/// `unlinkat` of a file (not a folder).
pub(super) fn unlink_at(dir: BorrowedFd, name: &CStr) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and outlives the call.
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) })?;
    Ok(())
}

/// `symlinkat`.
pub(super) fn symlink_at(target: &CStr, dir: BorrowedFd, name: &CStr) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated and outlive the call.
    check(unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })?;
    Ok(())
}

/// `mkfifoat`.
pub(super) fn fifo_at(dir: BorrowedFd, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and outlives the call.
    check(unsafe { libc::mkfifoat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t) })?;
    Ok(())
}

/// `linkat` without following a link at the old name.
pub(super) fn link_at(
    old_dir: BorrowedFd,
    old: &CStr,
    new_dir: BorrowedFd,
    new: &CStr,
) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated and outlive the call.
    check(unsafe {
        libc::linkat(
            old_dir.as_raw_fd(),
            old.as_ptr(),
            new_dir.as_raw_fd(),
            new.as_ptr(),
            0,
        )
    })?;
    Ok(())
}

/// `fchown`.
pub(super) fn chown_fd(fd: BorrowedFd, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscall on an open descriptor.
    check(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) })?;
    Ok(())
}

/// `fchownat` of the entry itself, never a link's target.
pub(super) fn chown_at(dir: BorrowedFd, name: &CStr, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and outlives the call.
    check(unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            name.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

/// `fchmod`.
pub(super) fn chmod_fd(fd: BorrowedFd, mode: u32) -> io::Result<()> {
    // SAFETY: plain syscall on an open descriptor.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode as libc::mode_t) })?;
    Ok(())
}

/// `fchmodat` (only ever called on entries the backup created and knows are not links).
pub(super) fn chmod_at(dir: BorrowedFd, name: &CStr, mode: u32) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated and outlives the call.
    check(unsafe { libc::fchmodat(dir.as_raw_fd(), name.as_ptr(), mode as libc::mode_t, 0) })?;
    Ok(())
}

/// The access and modification times of a `stat`, for the calls below.
fn times(st: &Stat) -> [libc::timespec; 2] {
    [
        libc::timespec {
            tv_sec: st.st_atime,
            tv_nsec: st.st_atime_nsec,
        },
        libc::timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec,
        },
    ]
}

/// `futimens` with the times of `st`.
pub(super) fn set_times_fd(fd: BorrowedFd, st: &Stat) -> io::Result<()> {
    let times = times(st);
    // SAFETY: `times` holds two timespecs and outlives the call.
    check(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) })?;
    Ok(())
}

/// `utimensat` of the entry itself (a link's own times) with the times of `st`.
pub(super) fn set_times_at(dir: BorrowedFd, name: &CStr, st: &Stat) -> io::Result<()> {
    let times = times(st);
    // SAFETY: `name` is NUL-terminated; `times` holds two timespecs; both outlive the call.
    check(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            name.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

/// `ioctl(FICLONE)`: makes `dst` share `src`'s blocks (a reflink).
pub(super) fn clone_file(src: BorrowedFd, dst: BorrowedFd) -> io::Result<()> {
    // SAFETY: FICLONE takes the source descriptor as its argument; both are open.
    check(unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) })?;
    Ok(())
}

/// `copy_file_range` of up to `len` bytes at explicit offsets, which it advances; returns the
/// bytes copied (0 at the end of `src`). Through `syscall` so the static musl build has it.
pub(super) fn copy_range(
    src: BorrowedFd,
    src_offset: &mut i64,
    dst: BorrowedFd,
    dst_offset: &mut i64,
    len: usize,
) -> io::Result<usize> {
    // SAFETY: the offsets are valid writable i64s (loff_t) that outlive the call.
    let copied = check_size(unsafe {
        libc::syscall(
            libc::SYS_copy_file_range,
            src.as_raw_fd(),
            src_offset as *mut i64,
            dst.as_raw_fd(),
            dst_offset as *mut i64,
            len,
            0u32,
        )
    })?;
    Ok(copied as usize)
}

/// `lseek(SEEK_DATA)`: the start of the next data at or after `offset`, or None when only a
/// hole follows (`ENXIO`).
pub(super) fn next_data(fd: BorrowedFd, offset: i64) -> io::Result<Option<i64>> {
    // SAFETY: plain syscall on an open descriptor.
    match check_size(unsafe { libc::lseek(fd.as_raw_fd(), offset, libc::SEEK_DATA) }) {
        Ok(at) => Ok(Some(at)),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `lseek(SEEK_HOLE)`: the start of the next hole at or after `offset` (the end of the file
/// counts as one).
pub(super) fn next_hole(fd: BorrowedFd, offset: i64) -> io::Result<i64> {
    // SAFETY: plain syscall on an open descriptor.
    check_size(unsafe { libc::lseek(fd.as_raw_fd(), offset, libc::SEEK_HOLE) })
}

/// `posix_fadvise(SEQUENTIAL)`: the file will be read from start to end (larger read-ahead).
pub(super) fn advise_sequential(fd: BorrowedFd) {
    // SAFETY: plain syscall on an open descriptor; only a hint, so its result is ignored.
    unsafe { libc::posix_fadvise(fd.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
}

/// `posix_fadvise(WILLNEED)` of the first `len` bytes: the kernel starts reading them now,
/// without waiting.
pub(super) fn advise_will_need(fd: BorrowedFd, len: i64) {
    // SAFETY: plain syscall on an open descriptor; only a hint, so its result is ignored.
    unsafe { libc::posix_fadvise(fd.as_raw_fd(), 0, len, libc::POSIX_FADV_WILLNEED) };
}

/// `sync_file_range(SYNC_FILE_RANGE_WRITE)`: starts writing the file's dirty pages to disk
/// without waiting, so the final `syncfs` has less left to wait for.
pub(super) fn start_writeback(fd: BorrowedFd) {
    // SAFETY: plain syscall on an open descriptor; only a hint, so its result is ignored.
    unsafe { libc::sync_file_range(fd.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

/// `syncfs`: every change on the file system of `fd` reaches the disk.
pub(super) fn sync_file_system(fd: BorrowedFd) -> io::Result<()> {
    // SAFETY: plain syscall on an open descriptor.
    check(unsafe { libc::syncfs(fd.as_raw_fd()) })?;
    Ok(())
}

/// `renameat2(RENAME_NOREPLACE)` inside one folder: `AlreadyExists` when `to` exists. Where
/// the file system lacks the flag, a check then a plain rename (the folder is Visor's).
pub(super) fn rename_no_replace(dir: BorrowedFd, from: &CStr, to: &CStr) -> io::Result<()> {
    // SAFETY: both strings are NUL-terminated and outlive the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            dir.as_raw_fd(),
            from.as_ptr(),
            dir.as_raw_fd(),
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            if stat_at(dir, to).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            // SAFETY: both strings are NUL-terminated and outlive the call.
            check(unsafe {
                libc::renameat(dir.as_raw_fd(), from.as_ptr(), dir.as_raw_fd(), to.as_ptr())
            })?;
            Ok(())
        }
        _ => Err(error),
    }
}

/// The bytes an unprivileged process may still write on the file system of `path`.
pub(super) fn free_bytes(path: &Path) -> io::Result<u64> {
    let path = c_string(path.as_os_str())?;
    // SAFETY: an all-zero `statvfs` is a valid value of the plain C struct.
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `vfs` writable; both outlive the call.
    check(unsafe { libc::statvfs(path.as_ptr(), &mut vfs) })?;
    Ok((vfs.f_bavail as u64).saturating_mul(vfs.f_frsize as u64))
}

/// Whether this process may create entries in the folder `path` (`EROFS` for a read-only
/// mount, `EACCES` for the mode), with its effective ids.
pub(super) fn may_write(path: &Path) -> io::Result<()> {
    let path = c_string(path.as_os_str())?;
    // SAFETY: `path` is NUL-terminated and outlives the call.
    check(unsafe {
        libc::faccessat(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::W_OK | libc::X_OK,
            libc::AT_EACCESS,
        )
    })?;
    Ok(())
}

/// The effective user id.
pub(super) fn effective_uid() -> u32 {
    crate::home::owner::effective_uid()
}

/// The name of user `uid` from the password database, when it has one.
pub(super) fn user_name(uid: u32) -> Option<String> {
    crate::home::owner::user_name(uid)
}
