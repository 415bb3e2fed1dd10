//! Tests of the whole engine on real folders under /tmp: the copy is identical (bytes, modes,
//! times, owners as root, links, hard links, FIFOs, sparse files), the names, `keep`, cancel
//! and time-out, validation, and, as root, a read-only bind mount and a loop-mounted XFS with
//! reflink (skipped with a printed reason when not root or the tools are missing).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::name::{BackupName, Reason};
use super::progress::{Progress, Report};
use super::run::{run_with, Request};
use super::temp::remove_tree;
use super::validate::{validate, DROP_IN_FILE};
use super::ErrorKind;
use crate::config::backup::Backup;
use crate::home::{Home, ReleaseTag};

/// A folder under /tmp removed at the end, even when the test fails; the other files' tests
/// use it too.
pub(super) struct Scratch(PathBuf);

impl Scratch {
    pub(super) fn new(name: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("visor-backup-{name}-{}", std::process::id()));
        let _ = remove_tree(&path);
        fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }
    pub(super) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = remove_tree(&self.0);
    }
}

/// Collects what a backup reports; may set a cancel flag or sleep at the first report.
#[derive(Default)]
struct Collect<'a> {
    reports: Vec<Report>,
    notes: Vec<String>,
    cancel_at_first: Option<&'a AtomicBool>,
    sleep_at_first: Option<Duration>,
}

impl Progress for Collect<'_> {
    fn report(&mut self, report: &Report) {
        if self.reports.is_empty() {
            if let Some(cancel) = self.cancel_at_first {
                cancel.store(true, Ordering::Relaxed);
            }
            if let Some(pause) = self.sleep_at_first {
                std::thread::sleep(pause);
            }
        }
        self.reports.push(report.clone());
    }
    fn note(&mut self, note: &str) {
        self.notes.push(note.to_owned());
    }
}

fn tag(t: &str) -> ReleaseTag {
    ReleaseTag::parse(t).unwrap()
}

fn request(from: &str, to: &str) -> Request {
    Request {
        from: tag(from),
        to: tag(to),
        reason: Reason::Upgrade { height: 120 },
    }
}

fn settings(paths: &[&Path], folder: &Path) -> Backup {
    Backup {
        enabled: true,
        paths: paths.iter().map(|p| p.to_path_buf()).collect(),
        folder: Some(folder.to_path_buf()),
        ..Backup::default()
    }
}

fn is_root() -> bool {
    super::sys::effective_uid() == 0
}

/// Sets the access and modification times of `path` itself (not a link's target).
fn set_times(path: &Path, atime: (i64, i64), mtime: (i64, i64)) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    let times = [
        libc::timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1,
        },
        libc::timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1,
        },
    ];
    // SAFETY: valid string and two timespecs that outlive the call.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", path.display());
}

fn mkfifo(path: &Path, mode: u32) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), mode) }, 0);
}

/// What is compared of each entry.
#[derive(Debug, PartialEq)]
struct Entry {
    kind: &'static str,
    mode: u32,
    owner: Option<(u32, u32)>,
    mtime: (i64, i64),
    atime: Option<(i64, i64)>,
    target: Option<PathBuf>,
}

/// Every entry below `root` (itself included) by its path relative to `root`; sockets left
/// out. Owners only as root; access times of folders and links left out (listing a folder or
/// reading a link, as this does, sets it). No file is read, so their access times stay: see
/// [`contents`] for the bytes.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = fs::symlink_metadata(&path).unwrap();
        let t = meta.file_type();
        use std::os::unix::fs::FileTypeExt;
        if t.is_socket() {
            continue;
        }
        let kind = if t.is_dir() {
            "folder"
        } else if t.is_symlink() {
            "link"
        } else if t.is_fifo() {
            "fifo"
        } else {
            "file"
        };
        if t.is_dir() {
            for entry in fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
        out.insert(
            path.strip_prefix(root).unwrap().to_path_buf(),
            Entry {
                kind,
                mode: if t.is_symlink() {
                    0
                } else {
                    meta.mode() & 0o7777
                },
                owner: is_root().then(|| (meta.uid(), meta.gid())),
                mtime: (meta.mtime(), meta.mtime_nsec()),
                atime: (t.is_file() || t.is_fifo()).then(|| (meta.atime(), meta.atime_nsec())),
                target: t.is_symlink().then(|| fs::read_link(&path).unwrap()),
            },
        );
    }
    out
}

/// The bytes of every regular file below `root`, by relative path.
fn contents(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    snapshot(root)
        .into_iter()
        .filter(|(_, entry)| entry.kind == "file")
        .map(|(relative, _)| {
            let path = if relative.as_os_str().is_empty() {
                root.to_path_buf()
            } else {
                root.join(&relative)
            };
            let bytes = fs::read(path).unwrap();
            (relative, bytes)
        })
        .collect()
}

/// Where `path` is inside a backup.
fn inside(backup: &Path, path: &Path) -> PathBuf {
    backup.join(path.strip_prefix("/").unwrap())
}

/// A source tree with every kind of entry. Returns (state folder, single file, outside).
fn make_tree(base: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let outside = base.join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret"), b"not to be copied").unwrap();

    let state = base.join("node/state");
    fs::create_dir_all(state.join("db/deep")).unwrap();
    fs::create_dir_all(state.join("frozen")).unwrap();
    fs::write(
        state.join("db/deep/blob"),
        (0..200_000u32)
            .map(|i| (i * 7 % 256) as u8)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    fs::write(state.join("db/CURRENT"), b"MANIFEST-000042\n").unwrap();
    fs::write(state.join("empty"), b"").unwrap();
    fs::write(state.join("frozen/keep"), b"read-only folder's file").unwrap();
    fs::write(state.join("run.sh"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(state.join("run.sh"), fs::Permissions::from_mode(0o751)).unwrap();
    fs::set_permissions(state.join("db/CURRENT"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::hard_link(state.join("db/CURRENT"), state.join("db/CURRENT.link")).unwrap();
    // A sparse file: 64 MiB with two small pieces of data.
    {
        use std::os::unix::fs::FileExt;
        let file = fs::File::create(state.join("sparse")).unwrap();
        file.write_all_at(b"start", 0).unwrap();
        file.write_all_at(b"in the middle", 30 << 20).unwrap();
        file.set_len(64 << 20).unwrap();
    }
    symlink("db/CURRENT", state.join("relative-link")).unwrap();
    symlink(&outside, state.join("outside-folder-link")).unwrap();
    symlink(outside.join("secret"), state.join("outside-file-link")).unwrap();
    symlink("/nonexistent/target", state.join("dangling")).unwrap();
    mkfifo(&state.join("pipe"), 0o620);
    let _socket = std::os::unix::net::UnixListener::bind(state.join("core.sock")).unwrap();
    if is_root() {
        std::os::unix::fs::lchown(state.join("db/deep/blob"), Some(12345), Some(23456)).unwrap();
        std::os::unix::fs::lchown(state.join("dangling"), Some(12345), Some(12345)).unwrap();
    }
    let file = base.join("node/genesis.json");
    fs::write(&file, b"{\"chain\":\"zeta\"}").unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o604)).unwrap();

    // Times last, deepest first, so creating entries does not change them again.
    let mut all: Vec<PathBuf> = Vec::new();
    let mut stack = vec![state.clone()];
    while let Some(path) = stack.pop() {
        if fs::symlink_metadata(&path).unwrap().is_dir() {
            for entry in fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
        }
        all.push(path);
    }
    all.push(file.clone());
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, path) in all.iter().enumerate() {
        let i = i as i64;
        set_times(
            path,
            (1_000_000_000 + i, 123_456_789),
            (1_100_000_000 + i, 987_654_321),
        );
    }
    fs::set_permissions(state.join("frozen"), fs::Permissions::from_mode(0o555)).unwrap();
    fs::set_permissions(state.join("db"), fs::Permissions::from_mode(0o750)).unwrap();
    set_times(
        &state.join("frozen"),
        (1_000_000_000, 1),
        (1_100_000_000, 2),
    );
    set_times(&state.join("db"), (1_000_000_000, 3), (1_100_000_000, 4));
    (state, file, outside)
}

#[test]
fn a_backup_is_an_identical_copy_and_follows_no_link() {
    let scratch = Scratch::new("identical");
    let (state, file, outside) = make_tree(scratch.path());
    let before_state = snapshot(&state);
    let before_file = snapshot(&file);
    // The snapshot read the links, which set their access times; give one a known one again.
    set_times(
        &state.join("dangling"),
        (1_000_000_010, 5),
        (1_100_000_010, 987_654_321),
    );
    let folder = scratch.path().join("backups");
    let cancel = AtomicBool::new(false);
    let mut progress = Collect::default();
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let done = run_with(
        &request("v1.2.0", "v1.3.0"),
        &settings(&[&state, &file], &folder),
        &mut progress,
        &cancel,
        Duration::ZERO,
    )
    .unwrap();
    let ended = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();

    // The folder was made for the owner only, and the name says what and when.
    assert_eq!(fs::metadata(&folder).unwrap().mode() & 0o777, 0o700);
    assert_eq!(fs::metadata(&done.path).unwrap().mode() & 0o777, 0o700);
    let name = BackupName::parse(done.path.file_name().unwrap().to_str().unwrap()).unwrap();
    assert_eq!((name.from.as_str(), name.to.as_str()), ("v1.2.0", "v1.3.0"));
    assert_eq!(name.reason, Reason::Upgrade { height: 120 });
    assert!((started..=ended).contains(&name.started), "{name:?}");
    assert_eq!(done.path.parent(), Some(folder.as_path()));

    // Identical: bytes, modes, owners (as root), times, link targets.
    let link = fs::symlink_metadata(inside(&done.path, &state).join("dangling")).unwrap();
    assert_eq!((link.atime(), link.atime_nsec()), (1_000_000_010, 5));
    assert_eq!(snapshot(&inside(&done.path, &state)), before_state);
    assert_eq!(snapshot(&inside(&done.path, &file)), before_file);
    assert_eq!(contents(&inside(&done.path, &state)), contents(&state));
    assert_eq!(contents(&inside(&done.path, &file)), contents(&file));
    let copy = inside(&done.path, &state);
    // Links are links, never followed: nothing of the outside folder is in the backup.
    assert!(fs::symlink_metadata(copy.join("outside-folder-link"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(!inside(&done.path, &outside).exists());
    let mut found_secret = false;
    let mut stack = vec![done.path.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap().flatten() {
            let t = entry.file_type().unwrap();
            if t.is_dir() {
                stack.push(entry.path());
            } else if t.is_file() && fs::read(entry.path()).unwrap() == b"not to be copied" {
                found_secret = true;
            }
        }
    }
    assert!(!found_secret, "a link was followed");
    // Hard links stay one file; the sparse file stays sparse.
    assert_eq!(
        fs::metadata(copy.join("db/CURRENT")).unwrap().ino(),
        fs::metadata(copy.join("db/CURRENT.link")).unwrap().ino()
    );
    let sparse = fs::metadata(copy.join("sparse")).unwrap();
    assert_eq!(sparse.len(), 64 << 20);
    assert!(
        sparse.blocks() * 512 <= 1 << 20,
        "{} blocks",
        sparse.blocks()
    );
    // The socket was skipped, with a note.
    assert!(!copy.join("core.sock").exists());
    assert!(
        progress
            .notes
            .iter()
            .any(|n| n.contains("core.sock") && n.contains("a socket")),
        "{:?}",
        progress.notes
    );
    assert_eq!(done.notes, progress.notes);
    // Intermediate folders have the sources' modes.
    assert_eq!(
        fs::metadata(inside(&done.path, scratch.path()))
            .unwrap()
            .mode()
            & 0o7777,
        fs::metadata(scratch.path()).unwrap().mode() & 0o7777
    );
    // Counts: regular files (hard links included) and their bytes.
    assert_eq!(done.files, 8);
    assert_eq!(done.bytes, 200_000 + 16 + 23 + 10 + (64 << 20) + 16);
    assert!(!progress.reports.is_empty());
    let last = progress.reports.last().unwrap();
    assert_eq!(last.files_total, 8);
    assert_eq!(last.bytes_total, done.bytes);
    // Nothing half-made is left.
    let names: Vec<String> = fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn keep_removes_older_backups_only_after_a_new_one_completed() {
    let scratch = Scratch::new("keep");
    let data = scratch.path().join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("f"), b"x").unwrap();
    let folder = scratch.path().join("backups");
    fs::create_dir(&folder).unwrap();
    let old = [
        "v0.9.0-to-v1.0.0-h5-20200101T000000Z",
        "v1.0.0-to-v1.1.0-switch-20210101T000000Z",
    ];
    for name in old {
        fs::create_dir(folder.join(name)).unwrap();
    }
    let strangers = ["notes.txt", "v0-to-v1-h1-20200101T000000Z.tar"];
    for name in strangers {
        fs::write(folder.join(name), b"mine").unwrap();
    }
    let mut settings = settings(&[&data], &folder);
    settings.keep = 2;
    let cancel = AtomicBool::new(false);
    let done = run_with(
        &request("v1.1.0", "v1.2.0"),
        &settings,
        &mut Collect::default(),
        &cancel,
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(done.removed, [folder.join(old[0])]);
    assert!(folder.join(old[1]).is_dir() && done.path.is_dir());
    for name in strangers {
        assert_eq!(fs::read(folder.join(name)).unwrap(), b"mine");
    }
    settings.keep = 1;
    let next = run_with(
        &request("v1.2.0", "v1.3.0"),
        &settings,
        &mut Collect::default(),
        &cancel,
        Duration::from_secs(5),
    )
    .unwrap();
    let mut removed = next.removed.clone();
    removed.sort();
    let mut expected = vec![folder.join(old[1]), done.path.clone()];
    expected.sort();
    assert_eq!(removed, expected);
    let mut left: Vec<String> = fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let mut want = vec![
        next.path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned(),
        strangers[0].to_owned(),
        strangers[1].to_owned(),
    ];
    want.sort();
    assert_eq!(left, want);
}

/// The backup folder holds nothing but `expected` entries.
fn assert_folder_holds(folder: &Path, expected: usize) {
    let names: Vec<String> = fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), expected, "{names:?}");
}

#[test]
fn cancel_and_time_out_remove_the_half_made_copy() {
    let scratch = Scratch::new("cancel");
    let data = scratch.path().join("data");
    fs::create_dir(&data).unwrap();
    for i in 0..50 {
        fs::write(data.join(format!("f{i}")), vec![i as u8; 100_000]).unwrap();
    }
    let folder = scratch.path().join("backups");

    let cancel = AtomicBool::new(false);
    let mut progress = Collect {
        cancel_at_first: Some(&cancel),
        ..Collect::default()
    };
    let error = run_with(
        &request("v1", "v2"),
        &settings(&[&data], &folder),
        &mut progress,
        &cancel,
        Duration::ZERO,
    )
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Cancelled, "{error}");
    assert!(error.message().contains("cancelled"), "{error}");
    assert!(error.message().contains("was removed"), "{error}");
    assert!(
        error.message().contains(&folder.display().to_string()),
        "{error}"
    );
    assert_folder_holds(&folder, 0);

    let cancel = AtomicBool::new(false);
    let mut slow = Collect {
        sleep_at_first: Some(Duration::from_millis(1100)),
        ..Collect::default()
    };
    let mut settings = settings(&[&data], &folder);
    settings.timeout = Duration::from_secs(1);
    let error = run_with(
        &request("v1", "v2"),
        &settings,
        &mut slow,
        &cancel,
        Duration::ZERO,
    )
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::TimedOut, "{error}");
    assert!(error.message().contains("timeoutSeconds = 1"), "{error}");
    assert!(error.message().contains("was removed"), "{error}");
    assert_folder_holds(&folder, 0);
}

#[test]
fn validation_names_key_path_and_fix() {
    let scratch = Scratch::new("validate");
    let base = scratch.path();
    let home = Home::new(base.join("home"));
    for dir in [
        "home/genesis",
        "home/v2",
        "home/.visor",
        "data/state",
        "real",
    ] {
        fs::create_dir_all(base.join(dir)).unwrap();
    }
    fs::write(base.join("home/v2/run-config.toml"), "").unwrap();
    fs::write(base.join("data/state/f"), b"data").unwrap();
    symlink(base.join("real"), base.join("link")).unwrap();
    let no_folders = BTreeMap::new();
    let messages = |settings: &Backup| -> Vec<String> {
        validate(settings, &home, &no_folders)
            .problems
            .into_iter()
            .map(|p| p.message)
            .collect()
    };
    let one = |settings: &Backup, key: &str, path: &Path, words: &[&str]| {
        let all = messages(settings);
        let found = all.iter().find(|m| {
            m.starts_with(&format!("{key}: {} ", path.display()))
                && words.iter().all(|w| m.contains(w))
        });
        assert!(
            found.is_some(),
            "no {key} problem with {words:?} in {all:#?}"
        );
    };
    let state = base.join("data/state");

    // Overlap, either way, and paths inside each other.
    let folder = state.join("backups");
    one(
        &settings(&[&state], &folder),
        "backup.folder",
        &folder,
        &["inside backup.paths[0]", "choose a folder outside"],
    );
    let wide = base.join("data");
    one(
        &settings(&[&state], &wide),
        "backup.paths[0]",
        &state,
        &["inside backup.folder"],
    );
    let out = base.join("backups");
    one(
        &settings(&[&wide, &state], &out),
        "backup.paths[1]",
        &state,
        &["overlaps backup.paths[0]"],
    );
    // The same place through a link counts too.
    let through_link = base.join("link/backups");
    one(
        &settings(&[&base.join("real")], &through_link),
        "backup.folder",
        &through_link,
        &["inside backup.paths[0]"],
    );

    // HOME: version folders, .visor, HOME itself; a folder of its own there is fine.
    for bad in ["home/genesis/b", "home/v2/b", "home/.visor/b"] {
        let folder = base.join(bad);
        one(
            &settings(&[&state], &folder),
            "backup.folder",
            &folder,
            &["put the backups outside HOME"],
        );
    }
    one(
        &settings(&[&state], home.root()),
        "backup.folder",
        home.root(),
        &["is HOME"],
    );
    let mut mapped = BTreeMap::new();
    mapped.insert(
        "v3".to_owned(),
        base.join("v3-elsewhere").display().to_string(),
    );
    let in_mapped = base.join("v3-elsewhere/b");
    assert!(validate(&settings(&[&state], &in_mapped), &home, &mapped)
        .problems
        .iter()
        .any(|p| p.message.contains("version folder")));
    let fine = settings(&[&state], &home.root().join("backups"));
    let validation = validate(&fine, &home, &no_folders);
    assert_eq!(
        validation.problems,
        [],
        "a folder of its own in HOME is fine"
    );
    assert_eq!(validation.paths.len(), 1);
    assert_eq!(
        (validation.paths[0].files, validation.paths[0].bytes),
        (1, 4)
    );
    assert!(validation.free.is_some());
    assert!(
        validation.cost().starts_with("backups will be"),
        "{}",
        validation.cost()
    );
    assert!(
        !home.root().join("backups").exists(),
        "validate makes nothing"
    );
    assert_eq!(
        fs::read_dir(home.root()).unwrap().count(),
        3,
        "no probe left"
    );

    // Missing and linked paths, missing parent, not a folder, not absolute.
    let missing = base.join("data/nothing");
    one(
        &settings(&[&missing], &out),
        "backup.paths[0]",
        &missing,
        &["does not exist", "remove it"],
    );
    let link = base.join("link");
    one(
        &settings(&[&link], &out),
        "backup.paths[0]",
        &link,
        &["symbolic link", "real folder"],
    );
    let orphan = base.join("no/such/parent");
    one(
        &settings(&[&state], &orphan),
        "backup.folder",
        &orphan,
        &["its parent", "install -d -m 0700"],
    );
    let file_folder = base.join("data/state/f");
    one(
        &settings(&[&base.join("real")], &file_folder),
        "backup.folder",
        &file_folder,
        &["not a folder"],
    );
    let relative = Path::new("backups");
    one(
        &settings(&[&state], relative),
        "backup.folder",
        relative,
        &["not an absolute path"],
    );

    // Not writable (only meaningful when not root: root may write anywhere not read-only).
    if is_root() {
        println!("validation_names_key_path_and_fix: running as root, so the not-writable (EACCES) case is skipped; the read-only case is tested by a_read_only_folder_gets_the_drop_in");
    } else {
        let locked = base.join("locked");
        fs::create_dir(&locked).unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o500)).unwrap();
        one(
            &settings(&[&state], &locked),
            "backup.folder",
            &locked,
            &["not writable", "chown"],
        );
        let below = locked.join("b");
        one(
            &settings(&[&state], &below),
            "backup.folder",
            &below,
            &["cannot be made", "install -d"],
        );
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o700)).unwrap();
    }

    // run refuses what validate refuses about the settings, and makes nothing.
    let cancel = AtomicBool::new(false);
    let error = run_with(
        &request("v1", "v2"),
        &settings(&[&state], &folder),
        &mut Collect::default(),
        &cancel,
        Duration::ZERO,
    )
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Settings);
    assert!(
        error.message().contains("inside backup.paths[0]"),
        "{error}"
    );
    assert!(!folder.exists());
    let error = run_with(
        &request("v1", "v2"),
        &settings(&[&missing], &out),
        &mut Collect::default(),
        &cancel,
        Duration::ZERO,
    )
    .unwrap_err();
    assert!(
        error.message().starts_with(&format!(
            "backup.paths[0]: {} does not exist",
            missing.display()
        )),
        "{error}"
    );
    assert!(!out.exists());
    let error = run_with(
        &request("v1", "v2"),
        &settings(&[&link], &out),
        &mut Collect::default(),
        &cancel,
        Duration::ZERO,
    )
    .unwrap_err();
    assert!(error.message().contains("symbolic link"), "{error}");
    assert!(!out.exists());
}

/// A mount made by a test, undone when dropped (also when the test fails).
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Runs `mount` with `args`; the mount point is the last argument.
fn mount(args: &[&str]) -> Result<Mounted, String> {
    let output = Command::new("mount")
        .args(args)
        .output()
        .map_err(|e| format!("mount: {e}"))?;
    if output.status.success() {
        Ok(Mounted(PathBuf::from(args[args.len() - 1])))
    } else {
        Err(format!(
            "mount {args:?}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

#[test]
fn a_read_only_folder_gets_the_drop_in() {
    if !is_root() {
        println!("a_read_only_folder_gets_the_drop_in: skipped: a read-only bind mount needs root");
        return;
    }
    let scratch = Scratch::new("readonly");
    let ro = scratch.path().join("ro");
    fs::create_dir_all(ro.join("existing")).unwrap();
    let data = scratch.path().join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("f"), b"x").unwrap();
    let ro_text = ro.display().to_string();
    let bind = match mount(&["--bind", &ro_text, &ro_text]) {
        Ok(bind) => bind,
        Err(e) => {
            println!("a_read_only_folder_gets_the_drop_in: skipped: {e}");
            return;
        }
    };
    if let Err(e) = mount(&["-o", "remount,bind,ro", &ro_text]).map(std::mem::forget) {
        println!("a_read_only_folder_gets_the_drop_in: skipped: {e}");
        return;
    }
    let home = Home::new(scratch.path().join("home"));
    for (folder, missing) in [(ro.join("existing"), false), (ro.join("backups"), true)] {
        let validation = validate(&settings(&[&data], &folder), &home, &BTreeMap::new());
        assert_eq!(validation.problems.len(), 1, "{:#?}", validation.problems);
        let problem = &validation.problems[0];
        assert_eq!(problem.key, "backup.folder");
        let drop_in = problem.drop_in.as_ref().expect("a drop-in");
        assert_eq!(drop_in.file, Path::new(DROP_IN_FILE));
        assert_eq!(
            drop_in.text,
            format!("[Service]\nReadWritePaths=-{}\n", folder.display())
        );
        let message = &problem.message;
        assert!(message.contains("read-only file system"), "{message}");
        assert!(message.contains(DROP_IN_FILE), "{message}");
        assert!(
            message.contains(&format!("ReadWritePaths=-{}", folder.display())),
            "{message}"
        );
        assert!(message.contains("systemctl daemon-reload"), "{message}");
        assert_eq!(message.contains("install -d"), missing, "{message}");
        // run says the same and makes nothing.
        let error = run_with(
            &request("v1", "v2"),
            &settings(&[&data], &folder),
            &mut Collect::default(),
            &AtomicBool::new(false),
            Duration::ZERO,
        )
        .unwrap_err();
        assert!(error.message().contains("ReadWritePaths="), "{error}");
    }
    drop(bind);
}

#[test]
fn clones_on_a_reflink_xfs_are_instant_and_take_no_space() {
    if !is_root() {
        println!("clones_on_a_reflink_xfs_are_instant_and_take_no_space: skipped: mounting a loop XFS needs root");
        return;
    }
    if !Command::new("mkfs.xfs")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        println!("clones_on_a_reflink_xfs_are_instant_and_take_no_space: skipped: mkfs.xfs not found (apt-get install xfsprogs)");
        return;
    }
    let scratch = Scratch::new("xfs");
    let image = scratch.path().join("xfs.img");
    let mnt = scratch.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    fs::File::create(&image)
        .unwrap()
        .set_len(320 << 20)
        .unwrap();
    let made = Command::new("mkfs.xfs")
        .args(["-q", "-m", "reflink=1"])
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "mkfs.xfs: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mounted = match mount(&[
        "-o",
        "loop",
        &image.display().to_string(),
        &mnt.display().to_string(),
    ]) {
        Ok(mounted) => mounted,
        Err(e) => {
            println!("clones_on_a_reflink_xfs_are_instant_and_take_no_space: skipped: {e}");
            return;
        }
    };
    let state = mnt.join("node/state");
    fs::create_dir_all(state.join("db")).unwrap();
    for i in 0..20 {
        let bytes: Vec<u8> = (0..(2 << 20))
            .map(|b: u32| (b.wrapping_mul(i + 3) >> 3) as u8)
            .collect();
        fs::write(state.join(format!("db/{i:03}.sst")), bytes).unwrap();
    }
    symlink("db/000.sst", state.join("latest")).unwrap();
    let before = snapshot(&state);
    let folder = mnt.join("backups");
    let home = Home::new(scratch.path().join("home"));
    let validation = validate(&settings(&[&state], &folder), &home, &BTreeMap::new());
    assert_eq!(validation.problems, []);
    assert_eq!(validation.paths[0].clones, Some(true));
    assert_eq!(validation.cost(), "backups will be clones (instant)");

    let free = |path: &Path| super::sys::free_bytes(path).unwrap();
    let free_before = free(&mnt);
    let done = run_with(
        &request("v1", "v2"),
        &settings(&[&state], &folder),
        &mut Collect::default(),
        &AtomicBool::new(false),
        Duration::ZERO,
    )
    .unwrap();
    assert!(done.cloned);
    assert_eq!((done.cloned_files, done.copied_files), (20, 0));
    assert_eq!(snapshot(&inside(&done.path, &state)), before);
    assert_eq!(contents(&inside(&done.path, &state)), contents(&state));
    let used = free_before.saturating_sub(free(&mnt));
    assert!(
        used < 8 << 20,
        "the clones took {used} bytes for 40 MiB of data"
    );

    // From another file system clones do not work: copies, which need the reserve free.
    let elsewhere = scratch.path().join("ext");
    fs::create_dir(&elsewhere).unwrap();
    fs::write(elsewhere.join("f"), vec![1u8; 1 << 20]).unwrap();
    let across = settings(&[&elsewhere], &folder);
    let validation = validate(&across, &home, &BTreeMap::new());
    assert_eq!(validation.paths[0].clones, Some(false));
    assert!(
        validation
            .cost()
            .starts_with("backups will be copies: about 1.0 MiB"),
        "{}",
        validation.cost()
    );
    assert_eq!(validation.problems.len(), 1, "{:#?}", validation.problems);
    assert!(
        validation.problems[0]
            .message
            .contains("not enough for a copy"),
        "{:?}",
        validation.problems
    );
    let error = run_with(
        &request("v2", "v3"),
        &across,
        &mut Collect::default(),
        &AtomicBool::new(false),
        Duration::ZERO,
    )
    .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoSpace, "{error}");
    assert!(error.message().contains("was removed"), "{error}");
    assert_folder_holds(&folder, 1);
    drop(mounted);
}
