//! Who may change what Visor runs. HOME, config.toml, a version folder, its run-config.toml
//! and a node binary decide what Visor starts; when group or other users may write one of
//! them, any such user chooses what runs, so Visor refuses it as OpenSSH refuses a key file
//! others can write.
//!
//! The check looks at the real file or folder behind symbolic links (a link's own mode means
//! nothing). It does not look at the folders above those paths, nor at owners. It decides
//! nothing else and does not log.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Who besides the owner may write a file of this mode, or `None` when nobody may.
pub fn other_writers(mode: u32) -> Option<&'static str> {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (false, false) => None,
        (true, false) => Some("its group"),
        (false, true) => Some("every user"),
        (true, true) => Some("its group and every user"),
    }
}

/// The problem with `path` when the real file or folder behind it may be written by users
/// other than its owner; `what` says what it is to Visor ("HOME", "config.toml", ...).
///
/// A path that cannot be looked at gives no problem here: the check that reads it reports
/// that, with its own advice.
pub fn problem(path: &Path, what: &str) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.permissions().mode() & 0o7777;
    let writers = other_writers(mode)?;
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let shown = if real == path {
        path.display().to_string()
    } else {
        format!("{} (behind {})", real.display(), path.display())
    };
    Some(format!(
        "{shown}: {what} is writable by {writers} (mode {mode:04o}), so any user who can write \
         it chooses what Visor runs; remove that right with chmod go-w {}",
        shell_word(&real)
    ))
}

/// The problems of several paths, each real file or folder reported once.
pub fn problems(paths: &[(&Path, &str)]) -> Vec<String> {
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut found = Vec::new();
    for (path, what) in paths {
        let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        if seen.contains(&real) {
            continue;
        }
        seen.push(real);
        found.extend(problem(path, what));
    }
    found
}

/// A path as one shell word, quoted only when it needs to be.
pub(crate) fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._+-,:@%=".contains(c));
    if plain {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("visor-perm-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }

    #[test]
    fn only_group_and_other_write_bits_matter() {
        for mode in [0o755, 0o700, 0o644, 0o4755, 0o555, 0o000] {
            assert_eq!(other_writers(mode), None, "{mode:o}");
        }
        assert_eq!(other_writers(0o775), Some("its group"));
        assert_eq!(other_writers(0o757), Some("every user"));
        assert_eq!(other_writers(0o1777), Some("its group and every user"));
    }

    #[test]
    fn a_writable_file_is_named_with_its_mode_and_the_fix() {
        let dir = temp_dir("file");
        let file = dir.join("zeta");
        fs::write(&file, b"x").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(problem(&file, "the core binary"), None);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o775)).unwrap();
        let message = problem(&file, "the core binary").unwrap();
        let shown = file.display();
        assert_eq!(
            message,
            format!(
                "{shown}: the core binary is writable by its group (mode 0775), so any user who \
                 can write it chooses what Visor runs; remove that right with chmod go-w {shown}"
            )
        );
        assert!(!message.ends_with('.'));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn links_are_followed_to_the_real_file_and_each_is_reported_once() {
        let dir = temp_dir("link");
        let real = dir.join("v2");
        fs::create_dir(&real).unwrap();
        fs::set_permissions(&real, fs::Permissions::from_mode(0o777)).unwrap();
        let link = dir.join("current");
        std::os::unix::fs::symlink("v2", &link).unwrap();
        let message = problem(&link, "the version folder").unwrap();
        assert!(
            message.starts_with(&format!(
                "{} (behind {}): the version folder is writable by its group and every user \
                 (mode 0777)",
                real.display(),
                link.display()
            )),
            "{message}"
        );
        assert!(message.ends_with(&format!("chmod go-w {}", real.display())));
        let found = problems(&[(&link, "the version folder"), (&real, "the folder")]);
        assert_eq!(found.len(), 1, "{found:?}");
        // A missing path is reported by whoever reads it.
        assert_eq!(problem(&dir.join("missing"), "x"), None);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn odd_paths_are_quoted_for_the_shell() {
        assert_eq!(shell_word(Path::new("/srv/visor/v1.0")), "/srv/visor/v1.0");
        assert_eq!(shell_word(Path::new("/srv/my home")), "'/srv/my home'");
        assert_eq!(shell_word(Path::new("/a'b")), r"'/a'\''b'");
    }
}
