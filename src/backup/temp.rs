//! The half-made backups in the backup folder: their names (`.visor-tmp-backup-PID-SEQ`, the
//! scheme of HOME's `.visor-tmp-WHAT-PID-SEQ`, so `home::temp_owner` reads the pid), the
//! removal of those a dead process left (`remove_leftovers`), and `remove_tree`, which removes
//! a copy even where it holds folders without write permission (a copy keeps the modes).
//!
//! It must not touch any other entry of the folder, nor follow a link while removing.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::home::{process_runs, temp_owner, TMP_PREFIX};

/// The start of every temporary name the backup makes in its folder.
pub const TEMP_START: &str = ".visor-tmp-backup-";

/// A fresh temporary name: `.visor-tmp-backup-PID-SEQ`, or `.visor-tmp-backup-probe-PID-SEQ`
/// for a probe file.
pub(super) fn temp_name(probe: bool) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let what = if probe { "probe-" } else { "" };
    format!("{TEMP_START}{what}{}-{seq}", std::process::id())
}

/// What [`remove_leftovers`] did.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// Removed: half-made backups of processes that no longer run.
    pub removed: Vec<PathBuf>,
    /// Still there, with the error that stopped their removal.
    pub stuck: Vec<(PathBuf, io::Error)>,
}

/// Removes the `.visor-tmp-backup-*` entries of `folder` whose owner process (the pid in the
/// name) no longer runs; a folder that does not exist has none. Only a folder that cannot be
/// listed is an error.
pub fn remove_leftovers(folder: &Path) -> io::Result<Leftovers> {
    let mut leftovers = Leftovers::default();
    let entries = match fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(leftovers),
        Err(e) => return Err(e),
    };
    debug_assert!(TEMP_START.starts_with(TMP_PREFIX));
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(TEMP_START) {
            continue;
        }
        if temp_owner(name).is_some_and(process_runs) {
            continue;
        }
        let path = entry.path();
        match remove_tree(&path) {
            Ok(()) => leftovers.removed.push(path),
            Err(e) => leftovers.stuck.push((path, e)),
        }
    }
    Ok(leftovers)
}

/// Removes `path` and everything below it without following links. Folders this user owns
/// that lack write or search permission (a copy of a read-only folder) are opened up first.
pub(super) fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_dir() {
        return fs::remove_file(path);
    }
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            open_up(path);
            fs::remove_dir_all(path)
        }
    }
}

/// Adds owner read, write and search permission to every folder below `path` (and itself)
/// that this user owns and lacks them; links are not followed. Errors are left for the
/// removal to report.
fn open_up(path: &Path) {
    let uid = super::sys::effective_uid();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&dir) else {
            continue;
        };
        if !meta.is_dir() {
            continue;
        }
        let mode = meta.permissions().mode();
        if mode & 0o700 != 0o700 && (meta.uid() == uid || uid == 0) {
            let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(mode | 0o700));
        }
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    use crate::backup::tests::Scratch;

    #[test]
    fn names_carry_the_pid_as_home_names_do() {
        let name = temp_name(false);
        assert!(name.starts_with(".visor-tmp-backup-"), "{name}");
        assert_eq!(temp_owner(&name), Some(std::process::id()));
        let probe = temp_name(true);
        assert!(probe.starts_with(".visor-tmp-backup-probe-"), "{probe}");
        assert_eq!(temp_owner(&probe), Some(std::process::id()));
        assert_ne!(temp_name(false), temp_name(false));
    }

    #[test]
    fn leftovers_of_dead_processes_go_and_nothing_else() {
        let folder_guard = Scratch::new("temp-leftovers");
        let folder = folder_guard.path().to_path_buf();
        // pid 1 always runs; a pid above the kernel's maximum never does.
        let dead = folder.join(".visor-tmp-backup-2147483647-0");
        let alive = folder.join(".visor-tmp-backup-1-0");
        let probe = folder.join(".visor-tmp-backup-probe-2147483647-3");
        let other_temp = folder.join(".visor-tmp-install-2147483647-0");
        let backup = folder.join("v1-to-v2-h5-20240101T000000Z");
        for dir in [&dead, &alive, &other_temp, &backup] {
            fs::create_dir(dir).unwrap();
        }
        fs::write(&probe, b"").unwrap();
        // A read-only folder inside the leftover, as a copy of one would be.
        fs::create_dir_all(dead.join("var/lib/ro")).unwrap();
        fs::write(dead.join("var/lib/ro/file"), b"x").unwrap();
        fs::set_permissions(dead.join("var/lib/ro"), fs::Permissions::from_mode(0o555)).unwrap();
        fs::set_permissions(dead.join("var/lib"), fs::Permissions::from_mode(0o500)).unwrap();
        // A link out of the leftover must not be followed by the removal.
        let outside_guard = Scratch::new("temp-leftovers-outside");
        let outside = outside_guard.path();
        fs::write(outside.join("keep"), b"k").unwrap();
        symlink(outside, dead.join("link")).unwrap();

        let leftovers = remove_leftovers(&folder).unwrap();
        assert!(leftovers.stuck.is_empty(), "{:?}", leftovers.stuck);
        let mut removed = leftovers.removed.clone();
        removed.sort();
        assert_eq!(removed, [dead.clone(), probe.clone()]);
        assert!(!dead.exists() && !probe.exists());
        assert!(alive.is_dir() && other_temp.is_dir() && backup.is_dir());
        assert!(outside.join("keep").is_file());
        assert!(remove_leftovers(&folder.join("missing"))
            .unwrap()
            .removed
            .is_empty());
    }
}
