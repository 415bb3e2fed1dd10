//! Whether `[backup]` can work, found before any block: `validate` lists every problem (each
//! naming the key, the path and the fix) and says what a backup will cost (clones or copies,
//! and how much). `check` reports it, and `run` applies it at start and on reload, where the
//! file system looks as the unit's sandbox makes it.
//!
//! Problems: no folder; a path or the folder not absolute; the folder inside a backed-up path
//! or a path inside the folder (or inside another path); the folder inside HOME's version
//! folders or `HOME/.visor`; a path that does not exist or is a link; the folder missing with
//! a parent that is missing or not writable; the folder not writable (for a read-only file
//! system, the unit's `ReadWritePaths=` drop-in to add); not enough free space for a copy
//! (the paths' blocks plus a 1 GiB reserve), checked only where clones do not work.
//!
//! It writes nothing but a probe file (`.visor-tmp-backup-probe-*`, removed at once) in the
//! folder, or in its parent when the folder is still to be made, to try `FICLONE`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::path::{Component, Path, PathBuf};

use super::progress::size;
use super::sys;
use super::temp::temp_name;
use super::tree::{measure, user, MeasureStop};
use crate::config::backup::Backup;
use crate::home::Home;

/// The systemd unit the .deb installs (contrib/visor.service).
pub const UNIT: &str = "zeta-visor";
/// Where the drop-in that makes the backup folder writable goes.
pub const DROP_IN_FILE: &str = "/etc/systemd/system/zeta-visor.service.d/backup.conf";
/// Kept free beyond the size of a copy.
pub const RESERVE: u64 = 1 << 30;

/// A drop-in file for the unit: where it goes and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DropIn {
    pub file: PathBuf,
    pub text: String,
}

impl DropIn {
    /// The drop-in that makes `folder` writable under the unit.
    pub fn read_write(folder: &Path) -> DropIn {
        DropIn {
            file: PathBuf::from(DROP_IN_FILE),
            text: format!("[Service]\nReadWritePaths={}\n", read_write_value(folder)),
        }
    }
}

/// The value of `ReadWritePaths=` for `folder`, with the `-` that lets the unit start when
/// the folder is missing (a backup disk that did not come up at boot): without it systemd
/// refuses to start the unit at all (status 226/NAMESPACE), and the node stays down.
fn read_write_value(folder: &Path) -> String {
    let mut value = std::ffi::OsString::from("-");
    value.push(folder.as_os_str());
    unit_path(Path::new(&value))
}

/// A path as a systemd unit setting takes it: quoted when it holds spaces, quotes or
/// backslashes.
fn unit_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    if text
        .chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '\\')
    {
        format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
    } else {
        text.into_owned()
    }
}

/// One problem of `[backup]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The key: `backup.folder`, `backup.paths[1]`.
    pub key: String,
    /// The path concerned.
    pub path: PathBuf,
    /// One line: `<key>: <path> <what is wrong>; <what to do>`.
    pub message: String,
    /// For a read-only file system: the drop-in that fixes it under the unit.
    pub drop_in: Option<DropIn>,
}

impl Problem {
    fn new(key: &str, path: &Path, what: impl AsRef<str>) -> Problem {
        Problem {
            key: key.to_owned(),
            path: path.to_path_buf(),
            message: format!("{key}: {} {}", path.display(), what.as_ref()),
            drop_in: None,
        }
    }
}

/// One backed-up path as `validate` saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct PathReport {
    pub path: PathBuf,
    /// Regular files below it.
    pub files: u64,
    /// Their sizes.
    pub bytes: u64,
    /// The blocks they occupy (what a copy needs).
    pub allocated: u64,
    /// Whether `FICLONE` works from its file system into the folder; None when not tried
    /// (no file with data in it, or no writable place to try).
    pub clones: Option<bool>,
}

/// What `validate` found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Validation {
    pub problems: Vec<Problem>,
    pub paths: Vec<PathReport>,
    /// Free bytes where the backups go, when known.
    pub free: Option<u64>,
}

impl Validation {
    /// What a backup will cost: `backups will be clones (instant)` or `backups will be
    /// copies: about N GiB` (with the paths cloned named when some are).
    pub fn cost(&self) -> String {
        if self.paths.is_empty() {
            return "no backed-up path could be measured".to_owned();
        }
        let copied: Vec<&PathReport> = self
            .paths
            .iter()
            .filter(|p| p.clones != Some(true) && p.bytes > 0)
            .collect();
        if copied.is_empty() {
            return "backups will be clones (instant)".to_owned();
        }
        let bytes: u64 = copied.iter().map(|p| p.bytes).sum();
        let cloned: Vec<String> = self
            .paths
            .iter()
            .filter(|p| p.clones == Some(true))
            .map(|p| p.path.display().to_string())
            .collect();
        let unknown = copied.iter().any(|p| p.clones.is_none());
        let mut line = format!("backups will be copies: about {}", size(bytes));
        if !cloned.is_empty() {
            line.push_str(&format!(" (clones of {})", cloned.join(", ")));
        }
        if unknown {
            line.push_str(" (clones could not be tried)");
        }
        line
    }
}

/// Every problem of `settings`, and the cost of a backup. `home` and `upgrade_folders` give
/// the version folders the backup folder must stay out of.
pub fn validate(
    settings: &Backup,
    home: &Home,
    upgrade_folders: &BTreeMap<String, String>,
) -> Validation {
    let mut validation = Validation {
        problems: settings_problems(settings, Some((home, upgrade_folders))),
        ..Validation::default()
    };
    let Some(folder) = settings.folder.as_deref().filter(|f| f.is_absolute()) else {
        return validation;
    };
    // Where a probe can be written: the folder, or its parent when it is still to be made.
    let probe_in = folder_problems(folder, &mut validation.problems);
    for (index, path) in settings.paths.iter().enumerate() {
        if !path.is_absolute() {
            continue;
        }
        let key = format!("backup.paths[{index}]");
        if let Some(problem) = path_problem(&key, path) {
            validation.problems.push(problem);
            continue;
        }
        let totals = match measure(path, None) {
            Ok(totals) => totals,
            Err(MeasureStop::Io(at, e)) => {
                validation.problems.push(Problem::new(
                    &key,
                    &at,
                    format!(
                        "cannot be read ({e}); make it readable by the user Visor runs as ({}), \
                         or leave it out of [backup] paths",
                        user()
                    ),
                ));
                continue;
            }
            Err(MeasureStop::Halted(_)) => continue,
        };
        let clones = match (&probe_in, &totals.sample) {
            (Some(dir), Some(sample)) => probe_clone(sample, dir).ok(),
            _ => None,
        };
        validation.paths.push(PathReport {
            path: path.clone(),
            files: totals.files,
            bytes: totals.bytes,
            allocated: totals.allocated,
            clones,
        });
    }
    if let Some(dir) = &probe_in {
        validation.free = sys::free_bytes(dir).ok();
    }
    if let Some(free) = validation.free {
        let copy: u64 = validation
            .paths
            .iter()
            .filter(|p| p.clones != Some(true))
            .map(|p| p.allocated)
            .sum();
        if copy > 0 && copy.saturating_add(RESERVE) > free {
            validation.problems.push(Problem::new(
                "backup.folder",
                folder,
                format!(
                    "has {} free, not enough for a copy of the backed-up paths ({} plus a {} \
                     reserve); free space there, choose a folder with room, or one on the same \
                     file system as the paths if it can clone (XFS with reflink, btrfs), where \
                     a backup takes no space at first",
                    size(free),
                    size(copy),
                    size(RESERVE)
                ),
            ));
        }
    }
    validation
}

/// The problems found without looking at the contents of the paths: missing or relative
/// folder and paths, overlaps between them, and (with a home) the folder inside HOME's
/// version folders or `.visor`. `run` checks these too.
pub(super) fn settings_problems(
    settings: &Backup,
    home: Option<(&Home, &BTreeMap<String, String>)>,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let example = "e.g. folder = \"/var/backups/zeta\"";
    let folder = match settings.folder.as_deref() {
        None => {
            problems.push(Problem {
                key: "backup.folder".to_owned(),
                path: PathBuf::new(),
                message: format!(
                    "backup.folder: missing; set the folder the backups go into, {example}"
                ),
                drop_in: None,
            });
            None
        }
        Some(folder) if !folder.is_absolute() => {
            problems.push(Problem::new(
                "backup.folder",
                folder,
                format!("is not an absolute path; give an absolute path, {example}"),
            ));
            None
        }
        Some(folder) => Some(folder),
    };
    if settings.paths.is_empty() {
        problems.push(Problem {
            key: "backup.paths".to_owned(),
            path: PathBuf::new(),
            message: "backup.paths: empty, so a backup would hold nothing; name what to back \
                      up, e.g. paths = [\"/var/lib/zeta/state\"]"
                .to_owned(),
            drop_in: None,
        });
    }
    let paths: Vec<(String, &Path, PathBuf)> = settings
        .paths
        .iter()
        .enumerate()
        .filter_map(|(index, path)| {
            let key = format!("backup.paths[{index}]");
            if path.is_absolute() && path.parent().is_some() {
                Some((key, path.as_path(), resolved(path)))
            } else {
                problems.push(Problem::new(
                    &key,
                    path,
                    "is not an absolute path to a file or folder; give one such as \
                     \"/var/lib/zeta/state\"",
                ));
                None
            }
        })
        .collect();
    for (i, (key, path, real)) in paths.iter().enumerate() {
        if let Some((other_key, other, _)) = paths[..i]
            .iter()
            .find(|(_, _, other_real)| real.starts_with(other_real) || other_real.starts_with(real))
        {
            problems.push(Problem::new(
                key,
                path,
                format!(
                    "overlaps {other_key} ({}): one holds the other, which would be backed up \
                     twice; keep only the outer one",
                    other.display()
                ),
            ));
        }
    }
    let Some(folder) = folder else {
        return problems;
    };
    let real_folder = resolved(folder);
    for (key, path, real) in &paths {
        if real_folder.starts_with(real) {
            problems.push(Problem::new(
                "backup.folder",
                folder,
                format!(
                    "is inside {key} ({}), so each backup would copy the backups before it; \
                     choose a folder outside every backed-up path, {example}",
                    path.display()
                ),
            ));
        } else if real.starts_with(&real_folder) {
            problems.push(Problem::new(
                key,
                path,
                format!(
                    "is inside backup.folder ({}), where backups are made and removed; back up \
                     the node's folders only, and keep the backups elsewhere",
                    folder.display()
                ),
            ));
        }
    }
    if let Some((home, upgrade_folders)) = home {
        if let Some(why) = home_clash(&real_folder, home, upgrade_folders) {
            problems.push(Problem::new(
                "backup.folder",
                folder,
                format!(
                    "{why}; put the backups outside HOME ({example}, recommended) or in a \
                     folder of their own in HOME such as {}",
                    home.root().join("backups").display()
                ),
            ));
        }
    }
    problems
}

/// Why `folder` (resolved) may not be where it is in HOME, if it may not.
fn home_clash(
    folder: &Path,
    home: &Home,
    upgrade_folders: &BTreeMap<String, String>,
) -> Option<String> {
    let root = resolved(home.root());
    if folder == root {
        return Some(format!(
            "is HOME ({}) itself, where the version folders live",
            home.root().display()
        ));
    }
    if let Ok(inside) = folder.strip_prefix(&root) {
        if let Some(Component::Normal(first)) = inside.components().next() {
            if first.to_string_lossy().starts_with(".visor") {
                return Some(format!(
                    "is inside {}, which Visor keeps for itself",
                    home.root().join(first).display()
                ));
            }
        }
    }
    home.version_folders(upgrade_folders)
        .into_iter()
        .find(|version| folder.starts_with(resolved(version)))
        .map(|version| {
            format!(
                "is inside the version folder {}, which Visor may run, replace or remove",
                version.display()
            )
        })
}

/// A path with `.` and `..` resolved and, for the part that exists, links resolved, so two
/// spellings of one place compare equal.
fn resolved(path: &Path) -> PathBuf {
    let mut lexical = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                lexical.pop();
            }
            other => lexical.push(other),
        }
    }
    // The longest existing prefix, resolved, then the rest as written.
    let mut existing = lexical.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = fs::canonicalize(existing) {
            let mut out = real;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return lexical,
        }
    }
}

/// A path that cannot be backed up: missing, a link, unreadable.
pub(super) fn path_problem(key: &str, path: &Path) -> Option<Problem> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            let target = fs::read_link(path)
                .map(|t| t.display().to_string())
                .unwrap_or_else(|_| "?".into());
            Some(Problem::new(
                key,
                path,
                format!(
                    "is a symbolic link (to {target}); a backup copies links as links and never \
                     follows them, so name the real folder instead"
                ),
            ))
        }
        Ok(_) => None,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Some(Problem::new(
            key,
            path,
            "does not exist; correct the path, create it, or remove it from [backup] paths",
        )),
        Err(e) => Some(Problem::new(
            key,
            path,
            format!(
                "cannot be looked at ({e}); make it readable by the user Visor runs as ({}), \
                 or remove it from [backup] paths",
                user()
            ),
        )),
    }
}

/// The folder's problems; returns where a probe file may be written (the folder, or its
/// parent when the folder is still to be made), when anywhere.
pub(super) fn folder_problems(folder: &Path, problems: &mut Vec<Problem>) -> Option<PathBuf> {
    let key = "backup.folder";
    match fs::metadata(folder) {
        Ok(meta) if !meta.is_dir() => {
            problems.push(Problem::new(
                key,
                folder,
                "is not a folder; point folder at a folder, or move that file away",
            ));
            None
        }
        Ok(_) => match sys::may_write(folder) {
            Ok(()) => Some(folder.to_path_buf()),
            Err(e) => {
                problems.push(not_writable(folder, folder, &e));
                None
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = folder.parent().unwrap_or(Path::new("/"));
            match fs::metadata(parent) {
                Ok(meta) if meta.is_dir() => match sys::may_write(parent) {
                    // The first backup makes it (0700).
                    Ok(()) => Some(parent.to_path_buf()),
                    Err(e) => {
                        problems.push(not_writable(folder, parent, &e));
                        None
                    }
                },
                _ => {
                    problems.push(Problem::new(
                        key,
                        folder,
                        format!(
                            "does not exist, nor does its parent {}; create it as root: {}",
                            parent.display(),
                            make_folder_command(folder)
                        ),
                    ));
                    None
                }
            }
        }
        Err(e) => {
            problems.push(Problem::new(
                key,
                folder,
                format!(
                    "cannot be looked at ({e}); make it reachable by the user Visor runs as ({})",
                    user()
                ),
            ));
            None
        }
    }
}

/// The command that makes the folder for Visor's user.
fn make_folder_command(folder: &Path) -> String {
    let uid = sys::effective_uid();
    let owner = sys::user_name(uid).unwrap_or_else(|| uid.to_string());
    format!("install -d -m 0700 -o {owner} {}", unit_path(folder))
}

/// The problem of a folder (or the parent it would be made in, `at`) that cannot be written.
fn not_writable(folder: &Path, at: &Path, error: &io::Error) -> Problem {
    let key = "backup.folder";
    let missing = folder != at;
    if error.raw_os_error() == Some(libc::EROFS) {
        let drop_in = DropIn::read_write(folder);
        let make = if missing {
            format!(
                "create it first (ReadWritePaths= makes writable only what exists when the \
                 unit starts): {}; then ",
                make_folder_command(folder)
            )
        } else {
            String::new()
        };
        let where_ = if missing {
            format!("would be made in {}, which is", at.display())
        } else {
            "is".to_owned()
        };
        let mut problem = Problem::new(
            key,
            folder,
            format!(
                "{where_} on a read-only file system for Visor (under the {UNIT} unit, \
                 ProtectSystem=strict makes all but its own folders read-only); {make}add the \
                 drop-in {} holding \"[Service]\" and \"ReadWritePaths={}\" on two lines, and \
                 run systemctl daemon-reload && systemctl restart {UNIT}",
                DROP_IN_FILE,
                read_write_value(folder)
            ),
        );
        problem.drop_in = Some(drop_in);
        return problem;
    }
    let what = if missing {
        format!(
            "does not exist and cannot be made: {} is not writable by the user Visor runs as \
             ({}: {error}); create it as root: {}",
            at.display(),
            user(),
            make_folder_command(folder)
        )
    } else {
        format!(
            "is not writable by the user Visor runs as ({}: {error}); give it to that user: \
             chown {} {} && chmod 0700 {}",
            user(),
            sys::effective_uid(),
            unit_path(folder),
            unit_path(folder)
        )
    };
    Problem::new(key, folder, what)
}

/// Whether `FICLONE` works from `sample`'s file system into the folder `into`: a probe file is
/// made there, cloned into and removed. An error means the probe could not be made.
pub(super) fn probe_clone(sample: &Path, into: &Path) -> io::Result<bool> {
    let dir = sys::open_folder(into)?;
    probe_clone_at(sample, dir.as_fd())
}

/// [`probe_clone`] into an open folder.
pub(super) fn probe_clone_at(sample: &Path, into: std::os::fd::BorrowedFd) -> io::Result<bool> {
    let source = fs::File::open(sample)?;
    let name = sys::c_string(temp_name(true).as_ref())?;
    let probe = sys::create_file_at(into, &name, 0o600)?;
    let cloned = sys::clone_file(source.as_fd(), probe.as_fd()).is_ok();
    drop(probe);
    sys::unlink_at(into, &name)?;
    Ok(cloned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_paths_are_quoted_when_needed() {
        assert_eq!(
            unit_path(Path::new("/var/backups/zeta")),
            "/var/backups/zeta"
        );
        assert_eq!(unit_path(Path::new("/mnt/my disk")), "\"/mnt/my disk\"");
        assert_eq!(
            DropIn::read_write(Path::new("/var/backups/zeta")).text,
            "[Service]\nReadWritePaths=-/var/backups/zeta\n"
        );
        assert_eq!(
            DropIn::read_write(Path::new("/mnt/my disk")).text,
            "[Service]\nReadWritePaths=\"-/mnt/my disk\"\n"
        );
    }
}
