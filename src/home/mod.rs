//! The home folder (see FILES in visor(1)): the only code that builds paths under HOME, and
//! the only code that changes the `current` link.
//!
//! It owns the layout, release-tag safety (a tag becomes a path only as a [`ReleaseTag`],
//! through [`upgrade_folder`] or [`release_folder`]) and the atomic switch. It does not decide
//! when to switch.

pub(crate) mod owner;
pub(crate) mod permissions;
pub(crate) mod read;
pub mod supervise_folder;
pub(crate) mod tag;

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

pub use tag::ReleaseTag;

pub const CONFIG_FILE: &str = "config.toml";
pub const CURRENT_LINK: &str = "current";
pub const GENESIS_FOLDER: &str = "genesis";
pub const RUN_CONFIG_FILE: &str = "run-config.toml";
pub const TMP_PREFIX: &str = ".visor-tmp-";
/// Notes an upgrade whose new version has not answered yet: `<tag> <height>`, in the
/// supervise folder.
pub const UPGRADE_MARK: &str = ".visor/upgrade";
/// Where earlier versions kept the mark; read once, then removed.
pub const LEGACY_UPGRADE_MARK: &str = ".visor-upgrade";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    pub fn new(root: PathBuf) -> Home {
        Home { root }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config_file(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }
    pub fn current_link(&self) -> PathBuf {
        self.root.join(CURRENT_LINK)
    }
    pub fn genesis_folder(&self) -> PathBuf {
        self.root.join(GENESIS_FOLDER)
    }
    /// The run-config of the folder `current` points at, through the link.
    pub fn current_run_config(&self) -> PathBuf {
        self.current_link().join(RUN_CONFIG_FILE)
    }
    /// The folders a version may run from, as far as HOME and `upgradeFolders` tell: genesis,
    /// where `current` points, every folder of HOME holding a run-config.toml (except
    /// `current` and `.visor*` names) and every `upgradeFolders` folder, whether or not it
    /// exists yet. Sorted, without duplicates. Nothing must be kept inside them but versions.
    pub fn version_folders(&self, upgrade_folders: &BTreeMap<String, String>) -> Vec<PathBuf> {
        let mut folders = vec![self.genesis_folder()];
        folders.extend(self.current_target().ok());
        for entry in fs::read_dir(&self.root).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".visor") || name == CURRENT_LINK {
                continue;
            }
            if entry.path().join(RUN_CONFIG_FILE).is_file() {
                folders.push(entry.path());
            }
        }
        for folder in upgrade_folders.values() {
            let path = Path::new(folder);
            folders.push(if path.is_absolute() {
                path.to_path_buf()
            } else {
                self.root.join(path)
            });
        }
        folders.sort();
        folders.dedup();
        folders
    }

    /// A fresh temporary name in HOME for something half-made.
    pub fn temp_path(&self, what: &str) -> PathBuf {
        use std::sync::atomic::{AtomicU64, Ordering};
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        self.root
            .join(format!("{TMP_PREFIX}{what}-{}-{seq}", std::process::id()))
    }

    /// Where `current` points, as an absolute folder path.
    pub fn current_target(&self) -> io::Result<PathBuf> {
        let target = fs::read_link(self.current_link())?;
        Ok(if target.is_absolute() {
            target
        } else {
            self.root.join(target)
        })
    }

    /// The folder `run` starts from, read-only: the folder `current` points at, or `genesis`
    /// when `current` is missing (`run` then links it, see [`Home::ensure_current`]). The flag
    /// tells whether `current` is missing. A plain folder, a file or a dangling link under
    /// that name is an error that the caller reports as a configuration error.
    pub fn current_folder(&self) -> Result<(PathBuf, bool), String> {
        let link = self.current_link();
        match fs::symlink_metadata(&link) {
            Ok(meta) if meta.file_type().is_symlink() => match fs::metadata(&link) {
                Ok(target) if target.is_dir() => self
                    .current_target()
                    .map(|folder| (folder, false))
                    .map_err(|e| format!("{}: {e}", link.display())),
                Ok(_) => Err(format!(
                    "{}: points at {} which is not a folder; point it at a version folder (ln -sfn genesis {})",
                    link.display(),
                    display_link_target(&link),
                    link.display()
                )),
                Err(e) => Err(format!(
                    "{}: dangling link to {} ({e}); restore that folder or point the link at an existing version folder",
                    link.display(),
                    display_link_target(&link)
                )),
            },
            Ok(_) => Err(format!(
                "{}: is a plain file or folder, not a link; Visor owns this name: move it away and let Visor link it to genesis",
                link.display()
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let genesis = self.genesis_folder();
                if genesis.is_dir() {
                    Ok((genesis, true))
                } else {
                    Err(format!(
                        "{}: missing, and there is no {} to link it to; create it with visor init",
                        link.display(),
                        genesis.display()
                    ))
                }
            }
            Err(e) => Err(format!("{}: {e}", link.display())),
        }
    }

    /// Makes sure `current` is a link to an existing folder, creating it (pointing at
    /// `genesis`) when it is missing; returns whether it was created. The errors are those of
    /// [`Home::current_folder`].
    pub fn ensure_current(&self) -> Result<bool, String> {
        let (_, missing) = self.current_folder()?;
        if !missing {
            return Ok(false);
        }
        self.switch_current(Path::new(GENESIS_FOLDER))
            .map_err(|e| format!("{}: cannot create link: {e}", self.current_link().display()))?;
        Ok(true)
    }

    /// Points `current` at `target` atomically: a new link under a temporary name, `rename(2)`
    /// over `current`, then fsync of HOME. A target inside HOME is stored as a relative name
    /// so the home folder can be moved. `current` is never missing at any instant.
    pub fn switch_current(&self, target: &Path) -> io::Result<()> {
        let stored: PathBuf = match target.strip_prefix(&self.root) {
            Ok(relative) if relative.components().count() == 1 => relative.to_path_buf(),
            _ => target.to_path_buf(),
        };
        let temp = self.temp_path("link");
        symlink(&stored, &temp)?;
        if let Err(e) = fs::rename(&temp, self.current_link()) {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
        fsync_dir(&self.root)
    }

    /// Writes the upgrade mark (temporary name, then rename). Not fsynced: it is a hint for a
    /// Visor restarted within the same boot, and writing it sits on the upgrade's path.
    pub fn write_upgrade_mark(&self, tag: &str, height: u64) -> Result<(), String> {
        crate::home::supervise_folder::write_atomic(
            &self.root.join(UPGRADE_MARK),
            format!("{tag} {height}\n").as_bytes(),
            0o644,
        )
    }

    /// The upgrade mark, if there is a readable one (at its old place in HOME when a Visor of
    /// an earlier version left it there); an error, the reason it is ignored, when the mark is
    /// not a regular file of HOME's owner that nobody else may write.
    pub fn read_upgrade_mark(&self) -> Result<Option<(String, u64)>, String> {
        // Read as Visor's own files are: never through a link, never a FIFO that blocks.
        let owner = owner::home_owner(&self.root).unwrap_or_else(owner::effective_uid);
        let bytes = match supervise_folder::read_owned(&self.root.join(UPGRADE_MARK), owner)? {
            Some(bytes) => bytes,
            None => {
                match supervise_folder::read_owned(&self.root.join(LEGACY_UPGRADE_MARK), owner)? {
                    Some(bytes) => bytes,
                    None => return Ok(None),
                }
            }
        };
        let parsed = String::from_utf8(bytes).ok().and_then(|text| {
            let (tag, height) = text.trim().split_once(' ')?;
            Some((tag.to_string(), height.parse().ok()?))
        });
        Ok(parsed)
    }

    pub fn clear_upgrade_mark(&self) -> io::Result<()> {
        for name in [UPGRADE_MARK, LEGACY_UPGRADE_MARK] {
            match fs::remove_file(self.root.join(name)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Removes `.visor-tmp-*` leftovers of an earlier run. A leftover that cannot be removed
    /// (say a root-owned folder of an interrupted `sudo visor prepare`) is returned with its
    /// error for the caller to warn about; only a HOME that cannot be listed is an error.
    pub fn remove_temp_leftovers(&self) -> io::Result<Leftovers> {
        self.remove_temp_leftovers_with(|path, is_dir| {
            if is_dir {
                fs::remove_dir_all(path)
            } else {
                fs::remove_file(path)
            }
        })
    }

    /// [`Home::remove_temp_leftovers`] with the removal given, so tests can make it fail.
    fn remove_temp_leftovers_with(
        &self,
        mut remove: impl FnMut(&Path, bool) -> io::Result<()>,
    ) -> io::Result<Leftovers> {
        let mut leftovers = Leftovers::default();
        // The supervise folder holds temporary files too (status.json, the upgrade mark).
        let supervise = match fs::read_dir(self.root.join(supervise_folder::FOLDER)) {
            Ok(entries) => Some(entries),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        for entry in fs::read_dir(&self.root)?.chain(supervise.into_iter().flatten()) {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with(TMP_PREFIX) {
                continue;
            }
            let path = entry.path();
            // A half-made folder of a process that still runs (a `visor prepare` beside this
            // Visor) is its owner's to finish or remove.
            if let Some(owner) = temp_owner(&name).filter(|pid| process_runs(*pid)) {
                leftovers.kept.push((path, owner));
                continue;
            }
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            match remove(&path, is_dir) {
                Ok(()) => leftovers.removed.push(path),
                Err(e) => leftovers.stuck.push((path, e)),
            }
        }
        Ok(leftovers)
    }
}

/// What [`Home::remove_temp_leftovers`] found.
#[derive(Debug, Default)]
pub struct Leftovers {
    /// Removed.
    pub removed: Vec<PathBuf>,
    /// Still there, with the error that stopped their removal.
    pub stuck: Vec<(PathBuf, io::Error)>,
    /// Kept: the process that is making them (its pid) still runs.
    pub kept: Vec<(PathBuf, u32)>,
}

/// The pid in a temporary name `.visor-tmp-WHAT-PID-SEQ` (see [`Home::temp_path`]).
pub fn temp_owner(name: &str) -> Option<u32> {
    let mut tokens = name.strip_prefix(TMP_PREFIX)?.rsplit('-');
    let _seq: u64 = tokens.next()?.parse().ok()?;
    tokens.next()?.parse().ok()
}

/// Whether process `pid` exists and is another process than this one.
pub(crate) fn process_runs(pid: u32) -> bool {
    if pid == std::process::id() || pid == 0 || pid > i32::MAX as u32 {
        return false;
    }
    // SAFETY: kill(2) with signal 0 only checks for existence; no memory is involved.
    let exists = unsafe { libc::kill(pid as libc::pid_t, 0) } == 0;
    exists || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

impl Leftovers {
    /// The warning about a leftover that could not be removed: the path, the error and what
    /// to do.
    pub fn stuck_message(path: &Path, error: &io::Error) -> String {
        format!(
            "home: cannot remove {}, a leftover of an interrupted run or install ({error}); \
             starting anyway: remove it as its owner or as root (rm -rf {})",
            path.display(),
            path.display()
        )
    }
}

fn display_link_target(link: &Path) -> String {
    fs::read_link(link)
        .map(|t| t.display().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// fsync of a folder, so a rename in it survives a power cut.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// The folder of release `tag`: `upgradeFolders[tag]` (a name in HOME or an absolute path) or
/// `HOME/tag`. The tag is checked first ([`ReleaseTag::parse`]) and never joined to a path
/// otherwise.
pub fn upgrade_folder(
    home: &Path,
    upgrade_folders: &BTreeMap<String, String>,
    tag: &str,
) -> Result<PathBuf, String> {
    let tag = ReleaseTag::parse(tag)?;
    Ok(release_folder(home, upgrade_folders, &tag))
}

/// The folder of a checked release tag: `upgradeFolders[tag]` (a name in HOME or an absolute
/// path) or `HOME/tag`.
pub fn release_folder(
    home: &Path,
    upgrade_folders: &BTreeMap<String, String>,
    tag: &ReleaseTag,
) -> PathBuf {
    match upgrade_folders.get(tag.as_str()) {
        Some(folder) if Path::new(folder).is_absolute() => PathBuf::from(folder),
        Some(folder) => home.join(folder),
        None => home.join(tag.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_home(name: &str) -> Home {
        let dir =
            std::env::temp_dir().join(format!("visor-home-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Home::new(dir)
    }

    #[test]
    fn the_upgrade_mark_moved_to_the_supervise_folder_and_the_old_one_is_read_once() {
        let home = temp_home("mark");
        fs::write(home.root().join(LEGACY_UPGRADE_MARK), "v2 120\n").unwrap();
        assert_eq!(home.read_upgrade_mark(), Ok(Some(("v2".into(), 120))));
        home.clear_upgrade_mark().unwrap();
        assert!(!home.root().join(LEGACY_UPGRADE_MARK).exists());
        fs::create_dir(home.root().join(".visor")).unwrap();
        home.write_upgrade_mark("v3", 7).unwrap();
        assert!(home.root().join(UPGRADE_MARK).is_file());
        assert_eq!(home.read_upgrade_mark(), Ok(Some(("v3".into(), 7))));
        home.clear_upgrade_mark().unwrap();
        assert_eq!(home.read_upgrade_mark(), Ok(None));
        fs::remove_dir_all(home.root()).unwrap();
    }

    #[test]
    fn a_half_made_folder_of_a_running_process_is_kept() {
        assert_eq!(temp_owner(".visor-tmp-install-v1.2.3-4242-7"), Some(4242));
        assert_eq!(temp_owner(".visor-tmp-status.json-99-0"), Some(99));
        assert_eq!(temp_owner(".visor-tmp-odd"), None);
        let home = temp_home("owners");
        // pid 1 always runs; a pid above the kernel's maximum never does.
        let kept = home.root().join(".visor-tmp-install-v2-1-0");
        let gone = home.root().join(".visor-tmp-install-v2-2147483647-0");
        let unowned = home.root().join(".visor-tmp-mystery");
        for dir in [&kept, &gone, &unowned] {
            fs::create_dir(dir).unwrap();
        }
        fs::create_dir(home.root().join(".visor")).unwrap();
        let status_tmp = home
            .root()
            .join(".visor/.visor-tmp-status.json-2147483647-0");
        fs::write(&status_tmp, "{").unwrap();
        let leftovers = home.remove_temp_leftovers().unwrap();
        assert_eq!(leftovers.kept, vec![(kept.clone(), 1)]);
        assert!(kept.exists() && !gone.exists() && !unowned.exists());
        assert!(
            !status_tmp.exists(),
            "temporary files in the supervise folder go too"
        );
        fs::remove_dir_all(home.root()).unwrap();
    }

    #[test]
    fn version_folders_are_genesis_current_run_configs_and_the_mapping() {
        let home = temp_home("versions");
        for name in ["genesis", "v2", "backups", ".visor", "vX.X.X"] {
            fs::create_dir(home.root().join(name)).unwrap();
        }
        for name in ["v2", ".visor", "vX.X.X"] {
            fs::write(home.root().join(name).join(RUN_CONFIG_FILE), "").unwrap();
        }
        symlink("v2", home.current_link()).unwrap();
        let mut map = BTreeMap::new();
        map.insert("v3".to_string(), "third".to_string());
        map.insert("v4".to_string(), "/opt/zeta/v4".to_string());
        let root = home.root();
        assert_eq!(
            home.version_folders(&map),
            [
                PathBuf::from("/opt/zeta/v4"),
                root.join("genesis"),
                root.join("third"),
                root.join("v2"),
                root.join("vX.X.X"),
            ]
        );
        fs::remove_dir_all(home.root()).unwrap();
    }

    #[test]
    fn upgrade_folder_uses_the_mapping_or_the_tag() {
        let mut map = BTreeMap::new();
        map.insert("v2".to_string(), "second".to_string());
        map.insert("v3".to_string(), "/opt/zeta/v3".to_string());
        let home = Path::new("/h");
        assert_eq!(
            upgrade_folder(home, &map, "v2").unwrap(),
            Path::new("/h/second")
        );
        assert_eq!(
            upgrade_folder(home, &map, "v3").unwrap(),
            Path::new("/opt/zeta/v3")
        );
        assert_eq!(
            upgrade_folder(home, &map, "v4").unwrap(),
            Path::new("/h/v4")
        );
        assert!(upgrade_folder(home, &map, "../v4").is_err());
    }

    #[test]
    fn current_is_created_switched_and_guarded() {
        let home = temp_home("current");
        assert!(home.ensure_current().is_err(), "no genesis yet");
        fs::create_dir(home.genesis_folder()).unwrap();
        assert_eq!(home.ensure_current(), Ok(true));
        assert_eq!(
            fs::read_link(home.current_link()).unwrap(),
            Path::new("genesis")
        );
        assert_eq!(home.ensure_current(), Ok(false));

        fs::create_dir(home.root().join("v2")).unwrap();
        home.switch_current(&home.root().join("v2")).unwrap();
        assert_eq!(fs::read_link(home.current_link()).unwrap(), Path::new("v2"));
        assert_eq!(home.current_target().unwrap(), home.root().join("v2"));

        fs::remove_dir(home.root().join("v2")).unwrap();
        let err = home.ensure_current().unwrap_err();
        assert!(err.contains("dangling"), "{err}");

        fs::remove_file(home.current_link()).unwrap();
        fs::create_dir(home.current_link()).unwrap();
        let err = home.ensure_current().unwrap_err();
        assert!(err.contains("not a link"), "{err}");
        fs::remove_dir_all(home.root()).unwrap();
    }

    #[test]
    fn temp_leftovers_are_removed_and_nothing_else() {
        let home = temp_home("leftovers");
        fs::create_dir(home.root().join(".visor-tmp-install-1")).unwrap();
        fs::write(home.root().join(".visor-tmp-install-1/zeta"), b"x").unwrap();
        fs::write(home.root().join(".visor-tmp-link-2"), b"").unwrap();
        fs::create_dir(home.root().join("genesis")).unwrap();
        let leftovers = home.remove_temp_leftovers().unwrap();
        assert_eq!(leftovers.removed.len(), 2);
        assert!(leftovers.stuck.is_empty());
        assert!(home.root().join("genesis").is_dir());
        assert_eq!(fs::read_dir(home.root()).unwrap().count(), 1);
        fs::remove_dir_all(home.root()).unwrap();
    }

    #[test]
    fn a_leftover_that_cannot_be_removed_is_named_and_the_others_still_go() {
        let home = temp_home("stuck");
        fs::create_dir(home.root().join(".visor-tmp-install-v2-2147483646-0")).unwrap();
        fs::write(home.root().join(".visor-tmp-link-2"), b"").unwrap();
        fs::create_dir(home.root().join("genesis")).unwrap();
        let leftovers = home
            .remove_temp_leftovers_with(|path, is_dir| {
                if is_dir {
                    Err(io::Error::from(io::ErrorKind::PermissionDenied))
                } else {
                    fs::remove_file(path)
                }
            })
            .unwrap();
        let stuck = home.root().join(".visor-tmp-install-v2-2147483646-0");
        assert_eq!(leftovers.removed, [home.root().join(".visor-tmp-link-2")]);
        assert_eq!(leftovers.stuck.len(), 1);
        assert_eq!(leftovers.stuck[0].0, stuck);
        let message = Leftovers::stuck_message(&leftovers.stuck[0].0, &leftovers.stuck[0].1);
        assert_eq!(
            message,
            format!(
                "home: cannot remove {0}, a leftover of an interrupted run or install \
                 (permission denied); starting anyway: remove it as its owner or as root \
                 (rm -rf {0})",
                stuck.display()
            )
        );
        assert!(home.root().join("genesis").is_dir());

        // Only a HOME that cannot be listed is an error.
        let missing = Home::new(home.root().join("missing"));
        assert!(missing.remove_temp_leftovers().is_err());
        fs::remove_dir_all(home.root()).unwrap();
    }
}
