//! The half-made version folder of an install: a `.visor-tmp-install-*` folder in HOME
//! ([`TempFolder`], removed with everything in it unless it is renamed into place), the modes
//! of what an install creates (set explicitly, whatever the umask), files written and flushed
//! ([`write_synced`]), the no-replace rename into place ([`rename_no_replace`]) and the rule
//! that an install stays inside HOME ([`check_inside_home`]).
//!
//! A leaf beside `error`: it knows nothing of releases, downloads or zips.

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::{local, InstallError};

/// Checks that `folder` (which does not exist yet) would be strictly inside `home`, after
/// resolving links in the part of its path that exists.
pub fn check_inside_home(home: &Path, folder: &Path) -> Result<(), String> {
    let real_home = fs::canonicalize(home)
        .map_err(|e| format!("cannot resolve the home folder {} ({e})", home.display()))?;
    let mut existing = folder.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if fs::symlink_metadata(&existing).is_ok() {
            break;
        }
        match existing.file_name() {
            Some(name) => rest.push(name.to_owned()),
            None => return Err("the path has a '..' or no folder name".to_owned()),
        }
        if !existing.pop() || existing.as_os_str().is_empty() {
            return Err("no part of the path exists".to_owned());
        }
    }
    let mut real = fs::canonicalize(&existing)
        .map_err(|e| format!("cannot resolve {} ({e})", existing.display()))?;
    for name in rest.iter().rev() {
        real.push(name);
    }
    if real.starts_with(&real_home) && real != real_home {
        Ok(())
    } else {
        Err("it is outside the home folder".to_owned())
    }
}

/// The mode of every folder an install creates, whatever Visor's umask.
pub const FOLDER_MODE: u32 = 0o755;
/// The mode of every file an install writes, except executables, whatever Visor's umask.
pub const FILE_MODE: u32 = 0o644;
/// The mode of the binary (and of zip entries marked executable).
pub const EXECUTABLE_MODE: u32 = 0o755;

/// Creates one folder with mode [`FOLDER_MODE`], set explicitly after creation so the umask
/// does not narrow it. An existing path is `AlreadyExists`, left as it is.
pub fn make_folder(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(FOLDER_MODE).create(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(FOLDER_MODE))
}

/// Creates `path` and its missing parents, each with mode [`FOLDER_MODE`]; an existing folder
/// on the way is left as it is.
pub fn make_folders(path: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = path;
    while fs::symlink_metadata(at).is_err() {
        missing.push(at);
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => break,
        }
    }
    for folder in missing.into_iter().rev() {
        match make_folder(folder) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && folder.is_dir() => {}
            other => other?,
        }
    }
    Ok(())
}

/// Writes a new file with mode [`FILE_MODE`] (set explicitly, whatever the umask) and flushes
/// it to disk.
pub fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    file.write_all(data)?;
    file.sync_all()
}

/// `rename(2)` that fails with `AlreadyExists` instead of replacing `to` (renameat2 with
/// RENAME_NOREPLACE; on a file system without it, a check then a rename).
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    let to_c_string = |path: &Path| {
        CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL"))
    };
    let (from_c, to_c) = (to_c_string(from)?, to_c_string(to)?);
    // SAFETY: both pointers are valid NUL-terminated strings that outlive the call; the
    // syscall only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from_c.as_ptr(),
            libc::AT_FDCWD,
            to_c.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => {
            if fs::symlink_metadata(to).is_ok() {
                Err(io::Error::from(io::ErrorKind::AlreadyExists))
            } else {
                fs::rename(from, to)
            }
        }
        Some(libc::EEXIST) | Some(libc::ENOTEMPTY) => {
            Err(io::Error::from(io::ErrorKind::AlreadyExists))
        }
        _ => Err(error),
    }
}

/// A half-made folder in HOME, removed with everything in it when dropped unless disarmed.
pub struct TempFolder {
    path: PathBuf,
    armed: bool,
}

impl TempFolder {
    pub fn create(path: PathBuf) -> Result<TempFolder, InstallError> {
        let failure = |path: &Path, e: io::Error| {
            local(format!(
                "cannot create {} ({e}); check the permissions and free space of the home folder",
                path.display()
            ))
        };
        fs::DirBuilder::new()
            .mode(FOLDER_MODE)
            .create(&path)
            .map_err(|e| failure(&path, e))?;
        // Armed from here on, so a failure to set the mode removes the folder again.
        let folder = TempFolder { path, armed: true };
        fs::set_permissions(&folder.path, fs::Permissions::from_mode(FOLDER_MODE))
            .map_err(|e| failure(&folder.path, e))?;
        Ok(folder)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the folder (it has been renamed into place).
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempFolder {
    fn drop(&mut self) {
        if self.armed {
            // A failure to clean up leaves a `.visor-tmp-` name, which `visor run` removes at
            // its next start; there is nowhere better to report it from a drop.
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_folders_must_be_inside_home() {
        let dir = std::env::temp_dir().join(format!("visor-install-inside-{}", std::process::id()));
        let home = dir.join("home");
        fs::create_dir_all(&home).unwrap();
        fs::create_dir_all(dir.join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(dir.join("elsewhere"), home.join("link")).unwrap();
        assert_eq!(check_inside_home(&home, &home.join("v2")), Ok(()));
        assert_eq!(check_inside_home(&home, &home.join("a/b/v2")), Ok(()));
        assert!(check_inside_home(&home, &dir.join("elsewhere/v2")).is_err());
        assert!(check_inside_home(&home, &home.join("link/v2")).is_err());
        assert!(check_inside_home(&home, &home.join("../elsewhere/v2")).is_err());
        assert!(check_inside_home(&home, &home.join("x/../../v2")).is_err());
        assert!(check_inside_home(&home, &home).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rename_never_replaces() {
        let dir = std::env::temp_dir().join(format!("visor-install-rename-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("a")).unwrap();
        fs::create_dir_all(dir.join("empty")).unwrap();
        let error = rename_no_replace(&dir.join("a"), &dir.join("empty")).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists);
        rename_no_replace(&dir.join("a"), &dir.join("b")).unwrap();
        assert!(dir.join("b").is_dir() && !dir.join("a").exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
