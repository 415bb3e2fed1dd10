//! Whose home this is. Visor's user is the owner of HOME: `visor run` runs as that user, and
//! every file Visor keeps in HOME must belong to it. A command run as another user (`sudo visor
//! switch`) would leave files Visor cannot open or replace, so the commands that write HOME
//! refuse to run as anyone but its owner, and `check` names what belongs to someone else.
//!
//! It reads metadata and the user database only; it decides nothing and does not log.

use std::ffi::CStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::supervise_folder;

/// The effective uid of this process.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// The owner of HOME (the real folder behind a link), or `None` when it cannot be looked at.
pub fn home_owner(root: &Path) -> Option<u32> {
    fs::metadata(root).ok().map(|meta| meta.uid())
}

/// The login name of `uid`, when the user database has one.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buffer = vec![0 as libc::c_char; 4096];
    // SAFETY: a zeroed passwd is a valid value for getpwuid_r to fill in.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; the buffer outlives the use of `entry`.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if rc != 0 || found.is_null() || entry.pw_name.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r succeeded, so pw_name is a NUL-terminated string in `buffer`.
    let name = unsafe { CStr::from_ptr(entry.pw_name) };
    Some(name.to_string_lossy().into_owned())
}

/// A user for a person: `zeta (uid 998)`, or `uid 998` when the name is unknown.
pub fn describe(uid: u32) -> String {
    match user_name(uid) {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// The user as `sudo -u` takes it: the name, or `#UID`.
pub fn sudo_user(uid: u32) -> String {
    user_name(uid).unwrap_or_else(|| format!("'#{uid}'"))
}

/// The owner as `chown` takes it: `zeta:` (the user and its login group), or the uid.
pub fn chown_owner(uid: u32) -> String {
    match user_name(uid) {
        Some(name) => format!("{name}:"),
        None => uid.to_string(),
    }
}

/// Every entry of HOME that Visor uses or makes (config.toml, the version folders: `genesis`
/// and every folder holding a run-config.toml, `.visor-*` names, and everything in the
/// supervise folder) that does not belong to `owner`, Visor's user, one message each with the
/// `chown` that fixes it. Links are skipped: Visor replaces them by renaming, whoever owns
/// them; so are entries Visor has no business with (say `lost+found` at the root of a file
/// system). The supervise folder itself is left to
/// [`supervise_folder::SuperviseFolder::problem`], and its entries are looked at only when it
/// is Visor's.
pub fn foreign_entries(root: &Path, owner: u32) -> Vec<String> {
    let mut found = Vec::new();
    let supervise = root.join(supervise_folder::FOLDER);
    let mut folders = vec![root.to_path_buf()];
    if fs::symlink_metadata(&supervise)
        .is_ok_and(|meta| meta.is_dir() && meta.uid() == owner && meta.mode() & 0o022 == 0)
    {
        folders.push(supervise.clone());
    }
    for folder in folders {
        let Ok(entries) = fs::read_dir(&folder) else {
            continue;
        };
        let mut paths: Vec<_> = entries.flatten().map(|entry| entry.path()).collect();
        paths.sort();
        for path in paths {
            if path == supervise || (folder == root && !is_visors(&path)) {
                continue;
            }
            let Ok(meta) = fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.file_type().is_symlink() || meta.uid() == owner {
                continue;
            }
            found.push(foreign_message(&path, meta.uid(), owner));
        }
    }
    found
}

/// Whether a top-level entry of HOME is one Visor uses or makes.
fn is_visors(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    name == super::CONFIG_FILE
        || name == super::GENESIS_FOLDER
        || name.starts_with(".visor")
        || path.join(super::RUN_CONFIG_FILE).is_file()
}

fn foreign_message(path: &Path, uid: u32, owner: u32) -> String {
    format!(
        "{}: belongs to {}, not to {}, the owner of HOME as whom Visor runs, so Visor may be \
         unable to open, replace or remove it (a command run as another user leaves such files); \
         give it back: chown -R {} {}",
        path.display(),
        describe(uid),
        describe(owner),
        chown_owner(owner),
        super::permissions::shell_word(path)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_a_name_and_an_unknown_uid_a_number() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        assert_eq!(describe(0), "root (uid 0)");
        assert_eq!(describe(3_999_999_999), "uid 3999999999");
        assert_eq!(sudo_user(3_999_999_999), "'#3999999999'");
        assert_eq!(chown_owner(0), "root:");
        assert_eq!(chown_owner(3_999_999_999), "3999999999");
    }

    #[test]
    fn entries_of_another_user_are_named_with_the_fix() {
        let root = std::env::temp_dir().join(format!("visor-owner-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join(".visor")).unwrap();
        fs::create_dir_all(root.join("genesis")).unwrap();
        fs::create_dir_all(root.join("lost+found")).unwrap();
        fs::write(root.join(".visor/lock"), "").unwrap();
        std::os::unix::fs::symlink("genesis", root.join("current")).unwrap();
        let me = effective_uid();
        assert!(foreign_entries(&root, me).is_empty());
        // Seen from another user, everything but the link, the supervise folder itself (which
        // is not that user's, so its entries are not looked at) and what Visor does not use is
        // foreign.
        let other = me.wrapping_add(1);
        let found = foreign_entries(&root, other);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with(&format!("{}: belongs to ", root.join("genesis").display())));
        assert!(found[0].ends_with(&format!(
            "chown -R {} {}",
            chown_owner(other),
            root.join("genesis").display()
        )));
        fs::remove_dir_all(&root).unwrap();
    }
}
