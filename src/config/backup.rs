//! The `[backup]` table of config.toml: a copy of the node's data taken while the binaries are
//! stopped, before an upgrade's switch or an operator's `visor switch`.
//!
//! It owns the keys, their defaults and the form of each value (absolute paths without `..`,
//! `keep` at least 1). Whether the paths exist, overlap the folder or fit in it is
//! `backup::validate`'s business (it looks at the file system); taking the backup is
//! `backup::run`'s. It must not look at the file system.

use std::path::{Component, PathBuf};
use std::time::Duration;

use super::doc::{key_path, Entry, Kind, Report};

/// The keys allowed in `[backup]`.
pub(super) const BACKUP_KEYS: &[&str] = &[
    "enabled",
    "paths",
    "folder",
    "keep",
    "timeoutSeconds",
    "onFailure",
];

/// The default `keep`.
pub const DEFAULT_KEEP: u32 = 2;
/// The default `timeoutSeconds`: an hour.
pub const DEFAULT_BACKUP_TIMEOUT: Duration = Duration::from_secs(3600);
/// The largest `keep` accepted; more is a typing mistake.
const MAX_KEEP: u32 = 10_000;

/// What happens at the block when the backup fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// The binaries stay stopped and the backup is tried again.
    Stop,
    /// A warning, and the upgrade goes on.
    Continue,
}

impl OnFailure {
    /// The value in config.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Stop => "stop",
            OnFailure::Continue => "continue",
        }
    }
}

/// The values allowed for `onFailure`, in the order messages list them.
const ON_FAILURE: &[OnFailure] = &[OnFailure::Stop, OnFailure::Continue];

/// `[backup]`, with every missing key at its default.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    /// `enabled`.
    pub enabled: bool,
    /// `paths`: absolute files or folders to back up, without `.` or `..` components.
    pub paths: Vec<PathBuf>,
    /// `folder`: the absolute folder the backups go into; required when enabled.
    pub folder: Option<PathBuf>,
    /// `keep`: how many backups are kept, at least 1.
    pub keep: u32,
    /// `timeoutSeconds`, at least 1.
    pub timeout: Duration,
    /// `onFailure`.
    pub on_failure: OnFailure,
}

impl Default for Backup {
    fn default() -> Self {
        Backup {
            enabled: false,
            paths: Vec::new(),
            folder: None,
            keep: DEFAULT_KEEP,
            timeout: DEFAULT_BACKUP_TIMEOUT,
            on_failure: OnFailure::Stop,
        }
    }
}

/// Reads the `[backup]` table into `backup`, reporting every problem.
pub(super) fn parse_backup(rep: &mut Report, entry: &Entry, backup: &mut Backup) {
    let Some(table) = rep.table(entry, "") else {
        return;
    };
    let parent = entry.key.as_str();
    let mut saw_folder = false;
    let mut saw_paths = false;
    for item in table {
        let path = key_path(parent, &item.key);
        match item.key.as_str() {
            "enabled" => {
                if let Some(enabled) = rep.boolean(item, parent) {
                    backup.enabled = enabled;
                }
            }
            "timeoutSeconds" => {
                if let Some(timeout) = rep.seconds_at_least(item, parent, 1, 3600) {
                    backup.timeout = timeout;
                }
            }
            "onFailure" => {
                if let Some(choice) = rep.choice(item, parent, ON_FAILURE, OnFailure::as_str) {
                    backup.on_failure = choice;
                }
            }
            "keep" => match item.node.kind {
                Kind::Int(n) if (1..=i64::from(MAX_KEEP)).contains(&n) => {
                    backup.keep = u32::try_from(n).unwrap_or(DEFAULT_KEEP);
                }
                _ => {
                    let what = format!(
                        "expected a whole number from 1 to {MAX_KEEP}, found {}; write how many \
                         backups to keep as a bare number, e.g. keep = 2",
                        rep.found(&item.node)
                    );
                    rep.error(&item.value_span(), &path, &what);
                }
            },
            "folder" => {
                saw_folder = true;
                let todo = "set it to the absolute path of the folder the backups go into, \
                            e.g. folder = \"/var/backups/zeta\"";
                let Some(value) = rep.string(item, parent, todo) else {
                    continue;
                };
                match check_path(value) {
                    Ok(folder) => backup.folder = Some(folder),
                    Err(what) => rep.error(&item.value_span(), &path, &format!("{what}; {todo}")),
                }
            }
            "paths" => {
                saw_paths = true;
                let Some(values) = rep.strings(item, parent) else {
                    continue;
                };
                let todo = "give the absolute path of a file or folder to back up, e.g. \
                            paths = [\"/var/lib/zeta/state\"]";
                let mut paths = Vec::with_capacity(values.len());
                for (index, value) in values.iter().enumerate() {
                    match check_path(value) {
                        Ok(p) if p.parent().is_none() => {
                            let what = "is the root folder, which holds the backup folder \
                                        itself; name the node's own folders instead";
                            rep.error(
                                &item.value_span(),
                                &format!("{path}[{index}]"),
                                &format!("{what}; {todo}"),
                            );
                        }
                        Ok(p) => paths.push(p),
                        Err(what) => rep.error(
                            &item.value_span(),
                            &format!("{path}[{index}]"),
                            &format!("{what}; {todo}"),
                        ),
                    }
                }
                backup.paths = paths;
            }
            _ => rep.unknown(item, parent, BACKUP_KEYS),
        }
    }
    if backup.enabled && !saw_folder {
        rep.missing(
            "backup",
            "folder",
            "a backup needs a folder to go into: set folder = \"/var/backups/zeta\" (an \
             absolute path outside the backed-up paths), or set enabled = false",
        );
    }
    if backup.enabled && !saw_paths {
        rep.missing(
            "backup",
            "paths",
            "name what to back up, e.g. paths = [\"/var/lib/zeta/state\"], or set enabled = \
             false",
        );
    }
    if backup.enabled && saw_paths && backup.paths.is_empty() && !paths_already_reported(table) {
        let span = table
            .iter()
            .find(|item| item.key == "paths")
            .and_then(Entry::value_span);
        rep.error(
            &span,
            &key_path(parent, "paths"),
            "is empty, so a backup would hold nothing; name what to back up, e.g. paths = \
             [\"/var/lib/zeta/state\"], or set enabled = false",
        );
    }
}

/// Whether an empty `paths` result comes from problems already reported (elements refused,
/// or not an array), so it is not reported a second time.
fn paths_already_reported(table: &[Entry]) -> bool {
    table.iter().any(|item| {
        item.key == "paths"
            && match &item.node.kind {
                Kind::Array(items) => !items.is_empty(),
                _ => true,
            }
    })
}

/// Checks a path value: absolute, no NUL, no `..`; returns it with `.` components and
/// repeated or trailing slashes removed.
fn check_path(value: &str) -> Result<PathBuf, String> {
    let path = super::check_absolute_path(value)?;
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!(
            "{} contains \"..\"; write the path without it",
            super::doc::quote(value)
        ));
    }
    Ok(path.components().collect::<PathBuf>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn parse(text: &str) -> Result<Config, Vec<String>> {
        Config::parse(Path::new("/h/config.toml"), text)
    }

    #[test]
    fn defaults_and_every_key() {
        assert_eq!(parse("").unwrap().backup, Backup::default());
        let backup = Backup::default();
        assert!(!backup.enabled);
        assert_eq!(backup.keep, 2);
        assert_eq!(backup.timeout, Duration::from_secs(3600));
        assert_eq!(backup.on_failure, OnFailure::Stop);
        let config = parse(
            "[backup]\nenabled = true\npaths = [\"/var/lib/zeta/state/\", \"/var/lib/./zeta/data\"]\n\
             folder = \"/var/backups/zeta\"\nkeep = 5\ntimeoutSeconds = 60\nonFailure = \"continue\"\n",
        )
        .unwrap();
        assert_eq!(
            config.backup,
            Backup {
                enabled: true,
                paths: vec![
                    PathBuf::from("/var/lib/zeta/state"),
                    PathBuf::from("/var/lib/zeta/data")
                ],
                folder: Some(PathBuf::from("/var/backups/zeta")),
                keep: 5,
                timeout: Duration::from_secs(60),
                on_failure: OnFailure::Continue,
            }
        );
    }

    #[test]
    fn a_disabled_table_needs_nothing() {
        let config = parse("[backup]\nenabled = false\n").unwrap();
        assert!(!config.backup.enabled);
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let errors = parse(
            "[backup]\nenabled = \"yes\"\npaths = [\"state\", \"/a/../b\", \"/\"]\nfolder = \"backups\"\n\
             keep = 0\ntimeoutSeconds = 0\nonFailure = \"retry\"\nkeeps = 3\n",
        )
        .unwrap_err();
        let expect = [
            "/h/config.toml:2: backup.enabled: expected true or false",
            "/h/config.toml:3: backup.paths[0]: \"state\" is not an absolute path",
            "/h/config.toml:3: backup.paths[1]: \"/a/../b\" contains \"..\"",
            "/h/config.toml:3: backup.paths[2]: is the root folder",
            "/h/config.toml:4: backup.folder: \"backups\" is not an absolute path",
            "/h/config.toml:5: backup.keep: expected a whole number from 1 to 10000, found 0",
            "/h/config.toml:6: backup.timeoutSeconds: expected a whole number of seconds",
            "/h/config.toml:7: backup.onFailure: expected one of \"stop\", \"continue\", found \"retry\"",
            "/h/config.toml:8: backup.keeps: unknown key",
        ];
        assert_eq!(errors.len(), expect.len(), "{errors:#?}");
        for (error, start) in errors.iter().zip(expect) {
            assert!(
                error.starts_with(start),
                "{error}\n  should start with {start}"
            );
        }
        assert!(errors[8].contains("did you mean keep?"), "{}", errors[8]);
    }

    #[test]
    fn enabled_needs_a_folder_and_paths() {
        let errors = parse("[backup]\nenabled = true\n").unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(
            errors[0].starts_with("/h/config.toml: [backup] folder: missing; a backup needs"),
            "{}",
            errors[0]
        );
        assert!(
            errors[1].starts_with("/h/config.toml: [backup] paths: missing;"),
            "{}",
            errors[1]
        );
        let errors = parse("[backup]\nenabled = true\nfolder = \"/b\"\npaths = []\n").unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].starts_with("/h/config.toml:4: backup.paths: is empty"),
            "{}",
            errors[0]
        );
    }
}
