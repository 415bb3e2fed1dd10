//! `keep`: once a new backup is complete, the newest `keep` backups of the folder stay and
//! the older ones go. Only folders whose name is exactly a backup's name ([`BackupName`])
//! count; the newest is decided by the time in the name, and the backup just made is always
//! kept, even when a clock that went back makes another name look newer.
//!
//! It must not touch any other entry of the folder (files, links, leftovers, the operator's
//! own folders).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::name::BackupName;
use super::temp::remove_tree;
use super::tree::{measure, MeasureStop};

/// The finished backups in `folder`, newest first (by the time in the name, then by name).
/// A missing folder has none.
pub fn backups(folder: &Path) -> io::Result<Vec<(BackupName, PathBuf)>> {
    let entries = match fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().and_then(BackupName::parse) else {
            continue;
        };
        // A folder only: a file or link under such a name is not Visor's.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            found.push((name, entry.path()));
        }
    }
    found.sort_by(|(a, a_path), (b, b_path)| {
        b.started.cmp(&a.started).then_with(|| b_path.cmp(a_path))
    });
    Ok(found)
}

/// The regular files below a backup and their bytes (a hard-linked file once), without
/// following links: what `visor list` shows. `Err` names the entry that could not be read.
pub fn footprint(backup: &Path) -> Result<(u64, u64), (PathBuf, io::Error)> {
    match measure(backup, None) {
        Ok(totals) => Ok((totals.files, totals.bytes)),
        Err(MeasureStop::Io(at, e)) => Err((at, e)),
        // Without limits nothing halts a measure.
        Err(MeasureStop::Halted(e)) => Err((backup.to_path_buf(), io::Error::other(e))),
    }
}

/// What [`keep_newest`] removed, and what it could not.
#[derive(Debug, Default)]
pub struct Pruned {
    pub removed: Vec<PathBuf>,
    pub failed: Vec<(PathBuf, io::Error)>,
}

/// Keeps `just_made` and the newest `keep - 1` other backups of `folder`; removes the rest.
pub(super) fn keep_newest(folder: &Path, keep: u32, just_made: &Path) -> io::Result<Pruned> {
    let mut pruned = Pruned::default();
    let others = backups(folder)?
        .into_iter()
        .filter(|(_, path)| path != just_made);
    let spare = (keep.max(1) - 1) as usize;
    for (_, path) in others.skip(spare) {
        match remove_tree(&path) {
            Ok(()) => pruned.removed.push(path),
            Err(e) => pruned.failed.push((path, e)),
        }
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_matching_folders_count_and_the_newest_stay() {
        let scratch = crate::backup::tests::Scratch::new("keep-unit");
        let folder = scratch.path().to_path_buf();
        let names = [
            "v1-to-v2-h10-20240101T000000Z",
            "v2-to-v3-h20-20240301T000000Z",
            "v3-to-v4-switch-20240201T000000Z",
            "v4-to-v5-h40-20240401T000000Z",
        ];
        for name in names {
            fs::create_dir(folder.join(name)).unwrap();
            fs::write(folder.join(name).join("data"), name).unwrap();
        }
        // Entries that look close but are not backups, and a file under a backup's name.
        let strangers = [
            "v0-to-v1-h1-20000101T000000Z.old",
            "notes",
            ".visor-tmp-backup-1-0",
            "v0-to-v1-h01-20000101T000000Z",
        ];
        for name in strangers {
            fs::create_dir(folder.join(name)).unwrap();
        }
        fs::write(folder.join("v0-to-v1-h1-20000101T000000Z"), b"a file").unwrap();

        let listed: Vec<String> = backups(&folder)
            .unwrap()
            .into_iter()
            .map(|(name, _)| name.format())
            .collect();
        assert_eq!(listed, [names[3], names[1], names[2], names[0]]);

        // The one just made is kept even when its time is older (a clock set back).
        let just_made = folder.join(names[0]);
        let pruned = keep_newest(&folder, 2, &just_made).unwrap();
        assert!(pruned.failed.is_empty());
        let mut removed = pruned.removed.clone();
        removed.sort();
        assert_eq!(removed, [folder.join(names[1]), folder.join(names[2])]);
        for kept in [names[0], names[3]] {
            assert!(folder.join(kept).join("data").is_file(), "{kept}");
        }
        for stranger in strangers {
            assert!(folder.join(stranger).is_dir(), "{stranger}");
        }
        assert!(folder.join("v0-to-v1-h1-20000101T000000Z").is_file());

        let pruned = keep_newest(&folder, 1, &folder.join(names[3])).unwrap();
        assert_eq!(pruned.removed, [folder.join(names[0])]);
        assert_eq!(backups(&folder).unwrap().len(), 1);
        assert!(backups(&folder.join("missing")).unwrap().is_empty());
    }
}
