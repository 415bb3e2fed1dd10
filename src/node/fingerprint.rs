//! What an upgrade folder looked like when it was checked: the folder's identity and the
//! identity, size, modification time and mode of its run-config.toml and binaries. At the
//! upgrade block Visor compares the folder with this record (a few `stat` calls, so the dark
//! time keeps its size) and checks the folder again in full when anything changed.
//!
//! It reads metadata only; it decides nothing.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::config::run_config::RunConfig;

/// One file or folder as `stat` saw it (symbolic links followed).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Size, modification time and mode; `None` for the folder, whose modification time
    /// changes with any file added beside the checked ones.
    content: Option<(u64, i64, i64, u32)>,
}

impl Stamp {
    fn take(path: &Path, with_content: bool) -> Result<Stamp, String> {
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("{}: cannot stat ({e})", path.display()))?;
        Ok(Stamp {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
            content: with_content
                .then(|| (meta.size(), meta.mtime(), meta.mtime_nsec(), meta.mode())),
        })
    }
}

/// A checked folder's record; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    stamps: Vec<Stamp>,
}

impl Fingerprint {
    /// Records `folder`, its run-config file and the binaries `run` names.
    pub fn of(folder: &Path, run: &RunConfig) -> Result<Fingerprint, String> {
        let mut stamps = vec![
            Stamp::take(folder, false)?,
            Stamp::take(&run.file, true)?,
            Stamp::take(&run.core.path, true)?,
        ];
        if let Some(data_node) = &run.data_node {
            if data_node.path != run.core.path {
                stamps.push(Stamp::take(&data_node.path, true)?);
            }
        }
        Ok(Fingerprint { stamps })
    }

    /// `None` while every recorded path is as it was; else what changed, naming the path.
    pub fn changed(&self) -> Option<String> {
        self.stamps
            .iter()
            .find_map(|old| match Stamp::take(&old.path, old.content.is_some()) {
                Err(e) => Some(e),
                Ok(new) if new == *old => None,
                Ok(_) => Some(format!(
                    "{}: replaced or modified since it was checked",
                    old.path.display()
                )),
            })
    }

    /// A record that matches nothing, for the machine's tests.
    #[cfg(test)]
    pub fn fake(path: &str) -> Fingerprint {
        Fingerprint {
            stamps: vec![Stamp {
                path: PathBuf::from(path),
                dev: 0,
                ino: 0,
                content: None,
            }],
        }
    }
}

/// A folder found ready: its parsed run-config and what it looked like when checked.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedFolder {
    pub run: RunConfig,
    pub fingerprint: Fingerprint,
}

impl CheckedFolder {
    /// Records `folder` as it is now, for a run-config that was just checked there.
    pub fn record(folder: &Path, run: RunConfig) -> Result<CheckedFolder, String> {
        let fingerprint = Fingerprint::of(folder, &run)?;
        Ok(CheckedFolder { run, fingerprint })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::run_config::{Binary, RpcTarget};
    use std::os::unix::fs::PermissionsExt;

    fn folder_with_binary(name: &str) -> (PathBuf, RunConfig) {
        let dir =
            std::env::temp_dir().join(format!("visor-fingerprint-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("run-config.toml"), "name = \"v2\"\n").unwrap();
        std::fs::write(dir.join("zeta"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(dir.join("zeta"), std::fs::Permissions::from_mode(0o755)).unwrap();
        let run = RunConfig {
            file: dir.join("run-config.toml"),
            name: "v2".into(),
            core: Binary {
                path: dir.join("zeta"),
                configured_path: "zeta".into(),
                args: vec![],
            },
            rpc: RpcTarget {
                socket_path: PathBuf::from("/run/z.sock"),
                http_path: "/rpc".into(),
            },
            data_node: None,
        };
        (dir, run)
    }

    #[test]
    fn an_untouched_folder_matches() {
        let (dir, run) = folder_with_binary("same");
        let print = Fingerprint::of(&dir, &run).unwrap();
        std::fs::write(dir.join("notes.txt"), "a file beside the checked ones").unwrap();
        assert_eq!(print.changed(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_replaced_binary_a_chmod_and_a_removed_folder_are_changes() {
        let (dir, run) = folder_with_binary("changed");
        let print = Fingerprint::of(&dir, &run).unwrap();
        std::fs::write(dir.join("zeta.new"), "#!/bin/sh\nexit 1\n").unwrap();
        std::fs::rename(dir.join("zeta.new"), dir.join("zeta")).unwrap();
        let change = print.changed().expect("replaced binary seen");
        assert!(change.contains("zeta"), "{change}");

        let print = Fingerprint::of(&dir, &run).unwrap();
        std::fs::set_permissions(dir.join("zeta"), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(print.changed().is_some(), "mode change seen");

        let print = Fingerprint::of(&dir, &run).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let change = print.changed().expect("removed folder seen");
        assert!(change.contains("cannot stat"), "{change}");
    }
}
